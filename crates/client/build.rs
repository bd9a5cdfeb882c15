include!("../engine/libtorch_link.rs");

fn main() {
    link_libtorch();
}
