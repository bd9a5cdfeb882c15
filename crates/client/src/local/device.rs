//! `--device cpu|cuda|cuda:N|auto` for the commands that run the engine.

use easel_engine::DeviceChoice;
use easel_spec::worker::DeviceName;

/// clap value parser for `--device`: the names a worker's `devices` takes.
pub fn parse_device(text: &str) -> Result<DeviceChoice, String> {
    DeviceName::parse(text)
        .map(DeviceChoice::from)
        .ok_or_else(|| format!("unknown device `{text}`: use cpu, cuda, cuda:N or auto"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!(parse_device("CPU"), Ok(DeviceChoice::Cpu));
        assert_eq!(parse_device("cuda"), Ok(DeviceChoice::Cuda(0)));
        assert_eq!(parse_device("cuda:3"), Ok(DeviceChoice::Cuda(3)));
        assert_eq!(parse_device("auto"), Ok(DeviceChoice::Auto));
        assert!(
            parse_device("tpu")
                .unwrap_err()
                .contains("unknown device `tpu`")
        );
    }
}
