//! The pages' shell and their one style sheet, inline in each page: system fonts, light and dark
//! from the reader's setting, one column at laptop width and below.

use crate::CONTENT_SECURITY_POLICY;
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// A whole page: the head every page has (charset, viewport, the content security policy, the
/// style sheet) around `body`.
pub fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="Content-Security-Policy" content=(CONTENT_SECURITY_POLICY);
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

pub const STYLE: &str = r#"
:root { color-scheme: light dark; --fg: #1d2330; --muted: #5b6478; --bg: #ffffff; --card: #f5f6f9;
  --line: #d9dce3; --accent: #2563eb; --bad: #c2410c; --good: #15803d; --cell: 37, 99, 235; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e8ee; --muted: #a0a8ba; --bg: #14171d; --card: #1d212a; --line: #343a47;
    --accent: #7aa2ff; --bad: #fb923c; --good: #4ade80; --cell: 122, 162, 255; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1180px; padding: 1.5rem 1.25rem 4rem; background: var(--bg);
  color: var(--fg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2.2rem 0 .6rem; border-bottom: 1px solid var(--line); padding-bottom: .3rem; }
h3 { font-size: 1rem; margin: 1.4rem 0 .5rem; }
p, li { color: var(--fg); }
.muted { color: var(--muted); }
.headline { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: .75rem; margin: 1rem 0; }
.figure { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .7rem .9rem; }
.figure .value { font-size: 1.5rem; font-weight: 600; }
.figure .label { color: var(--muted); font-size: .85rem; }
.plots svg { max-width: 100%; height: auto; border-radius: 6px; margin: .25rem 0; }
table { border-collapse: collapse; margin: .5rem 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: right; }
th { background: var(--card); font-weight: 600; }
td.name, th.name { text-align: left; }
.scroll { overflow-x: auto; }
table.heat td { min-width: 3rem; text-align: center; }
table.heat td.diagonal { outline: 2px solid var(--good); outline-offset: -2px; }
.groups { display: flex; flex-direction: column; gap: .5rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: .75rem; }
figure.thumb { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .5rem; }
figure.thumb img { width: 100%; height: auto; image-rendering: pixelated; border-radius: 4px; display: block; }
figure.thumb figcaption { font-size: .78rem; margin-top: .35rem; overflow-wrap: anywhere; }
figure.thumb ol { margin: .25rem 0 0; padding-left: 1.2rem; }
figure.thumb li.wrong { color: var(--bad); font-weight: 600; }
figure.thumb li.truth { color: var(--good); font-weight: 600; }
code, pre { font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .8rem; overflow-x: auto; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dt { color: var(--muted); }
dd { margin: 0; }
a { color: var(--accent); }
"#;
