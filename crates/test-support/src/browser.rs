//! A page opened in a real headless browser (Debian's `chromium`, installed by deploy/test.sh):
//! its DOM after loading, every console message (a page without script logs none unless
//! something failed or was blocked), every request the page itself made (from Chromium's net
//! log: Chromium's own background requests are not the page's), and screenshots in the light or
//! the dark colour scheme.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoadedPage {
    /// The DOM as Chromium serialises it after the load.
    pub dom: String,
    /// Console messages, one per line Chromium logged.
    pub console: Vec<String>,
    /// URLs of the network requests the page made.
    pub page_requests: Vec<String>,
}

/// The browser: `EASEL_CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> PathBuf {
    let name = std::env::var_os("EASEL_CHROMIUM").unwrap_or_else(|| "chromium".into());
    let found = Command::new(&name).arg("--version").output();
    assert!(
        found.is_ok_and(|output| output.status.success()),
        "{} is missing: install Debian's chromium (deploy/test.sh does) or set EASEL_CHROMIUM",
        name.to_string_lossy()
    );
    PathBuf::from(name)
}

fn headless(profile: &Path) -> Command {
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        // Containers give /dev/shm 64 MB, too little for a tall screenshot.
        .arg("--disable-dev-shm-usage")
        // Tests run as root in CI containers, where Chromium's sandbox cannot start.
        .arg("--no-sandbox")
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// Loads `page` (a local file), then takes a `width` x `height` screenshot of it into
/// `screenshot`.
pub fn load_in_chromium(page: &Path, screenshot: &Path, width: u32, height: u32) -> LoadedPage {
    let profile = tempfile::tempdir().unwrap();
    let net_log = profile.path().join("net-log.json");
    let url = format!("file://{}", std::fs::canonicalize(page).unwrap().display());
    let output = headless(&profile.path().join("profile"))
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--log-net-log={}", net_log.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let console = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    let page_requests = requests_from_file_pages(&net_log);
    screenshot_in_chromium(page, screenshot, (width, height), ColorScheme::Light);
    LoadedPage {
        dom: String::from_utf8_lossy(&output.stdout).into_owned(),
        console,
        page_requests,
    }
}

/// The reader's colour scheme, as CSS's `prefers-color-scheme` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorScheme {
    Light,
    Dark,
}

/// A `width` x `height` screenshot of `page` (a local file) as a reader with `scheme` sees it.
pub fn screenshot_in_chromium(
    page: &Path,
    screenshot: &Path,
    (width, height): (u32, u32),
    scheme: ColorScheme,
) {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", std::fs::canonicalize(page).unwrap().display());
    if let Some(dir) = screenshot.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    // Blink's own setting, which `prefers-color-scheme` reports: 0 is dark, 1 light.
    let preferred = match scheme {
        ColorScheme::Dark => 0,
        ColorScheme::Light => 1,
    };
    let shot = headless(profile.path())
        .arg(format!("--blink-settings=preferredColorScheme={preferred}"))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        shot.status.success() && screenshot.is_file(),
        "no screenshot of {url}: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
}

/// The URLs of requests started on behalf of a `file://` page (their network isolation key is
/// the page's origin); Chromium's own requests carry another key.
fn requests_from_file_pages(net_log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(net_log).unwrap_or_default();
    // Chromium may be stopped before it closes the log's JSON; the events it wrote are complete.
    let text = if text.trim_end().ends_with('}') {
        text
    } else {
        format!("{}]}}", text.trim_end().trim_end_matches(','))
    };
    let log: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{} is not a net log: {e}", net_log.display());
    });
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].as_u64();
    log["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|event| event["type"].as_u64() == start_job)
        .filter(|event| {
            event["params"]["network_isolation_key"]
                .as_str()
                .is_some_and(|key| key.starts_with("file://"))
        })
        .filter_map(|event| event["params"]["url"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The screenshot follows the scheme asked for, through `prefers-color-scheme`.
    #[test]
    fn a_screenshot_takes_the_colour_scheme_it_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("schemes.html");
        std::fs::write(
            &page,
            "<!DOCTYPE html><html><head><style>body { background: #fafafa; }\
             @media (prefers-color-scheme: dark) { body { background: #101820; } }\
             </style></head><body></body></html>",
        )
        .unwrap();
        let pixel_of = |scheme| {
            let shot = dir.path().join(format!("{scheme:?}.png"));
            screenshot_in_chromium(&page, &shot, (300, 200), scheme);
            image::open(&shot).unwrap().to_rgb8().get_pixel(150, 100).0
        };
        assert_eq!(pixel_of(ColorScheme::Light), [0xfa, 0xfa, 0xfa]);
        assert_eq!(pixel_of(ColorScheme::Dark), [0x10, 0x18, 0x20]);
    }

    /// The checks can fail: a page that fetches an image and logs an error is caught.
    #[test]
    fn a_page_that_reaches_out_and_logs_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("leaky.html");
        std::fs::write(
            &page,
            r#"<!DOCTYPE html><html><body><img src="http://127.0.0.1:65530/x.png"><script>console.error("boom")</script></body></html>"#,
        )
        .unwrap();
        let loaded = load_in_chromium(&page, &dir.path().join("shot.png"), 400, 300);
        assert!(loaded.console.iter().any(|line| line.contains("boom")));
        assert_eq!(loaded.page_requests, ["http://127.0.0.1:65530/x.png"]);
    }
}
