//! Numbers as each UI language writes them: Vietnamese `1.234,5` (a dot between thousands, a
//! decimal comma: `0,5 %`, `1.234 kbit/s`), English `1,234.5`. The pages' templates use them
//! through the `num` and `size` filters, which take the language of the page being rendered;
//! `static/live.js` does the same in the browser (`formatNumber`).

use crate::web::Lang;

/// `value` with `decimals` digits after the separator, thousands grouped, in `lang`'s way.
/// Not a number (NaN, infinite) is shown as a dash.
pub fn format_number(value: f64, decimals: usize, lang: Lang) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    let (group, point) = match lang {
        Lang::Vi => ('.', ','),
        Lang::En => (',', '.'),
    };
    let digits = format!("{:.*}", decimals, value.abs());
    let (int, frac) = digits.split_once('.').unwrap_or((&digits, ""));
    let mut out = String::new();
    // A value that rounds to zero is not shown as "-0".
    if value < 0.0 && digits.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        out.push('-');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(group);
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push(point);
        out.push_str(frac);
    }
    out
}

/// A file size: whole KB below 1 MB (rounded up: a 1-byte file is 1 KB), MB with one decimal
/// above (`1,5 MB` in Vietnamese).
pub fn format_size(bytes: i64, lang: Lang) -> String {
    const MB: i64 = 1024 * 1024;
    if bytes >= MB {
        format!("{} MB", format_number(bytes as f64 / MB as f64, 1, lang))
    } else {
        let kb = bytes.max(0).unsigned_abs().div_ceil(1024);
        format!("{} KB", format_number(kb as f64, 0, lang))
    }
}

/// The language of the page a template renders: its `t` dictionary's `lang` (`vi` unless `en`).
pub fn page_lang(state: &minijinja::State) -> Lang {
    let lang = state.lookup("t").and_then(|t| t.get_attr("lang").ok());
    match lang.as_ref().and_then(|l| l.as_str()) {
        Some("en") => Lang::En,
        _ => Lang::Vi,
    }
}

/// Registers `{{ x|num }}`, `{{ x|num(1) }}` and `{{ bytes|size }}`.
pub fn add_filters(env: &mut minijinja::Environment<'_>) {
    env.add_filter(
        "num",
        |state: &minijinja::State, value: f64, decimals: Option<usize>| {
            format_number(value, decimals.unwrap_or(0), page_lang(state))
        },
    );
    env.add_filter("size", |state: &minijinja::State, bytes: i64| {
        format_size(bytes, page_lang(state))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vietnamese_and_english_ways() {
        for (value, decimals, vi, en) in [
            (0.0, 0, "0", "0"),
            (0.5, 1, "0,5", "0.5"),
            (999.0, 0, "999", "999"),
            (1234.0, 0, "1.234", "1,234"),
            (1234.44, 1, "1.234,4", "1,234.4"),
            (1_500_000.0, 0, "1.500.000", "1,500,000"),
            (12.25, 2, "12,25", "12.25"),
            (-25_000.0, 0, "-25.000", "-25,000"),
            (-0.01, 1, "0,0", "0.0"),
            (999.96, 1, "1.000,0", "1,000.0"),
            (f64::NAN, 1, "–", "–"),
        ] {
            assert_eq!(format_number(value, decimals, Lang::Vi), vi, "{value}");
            assert_eq!(format_number(value, decimals, Lang::En), en, "{value}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(format_size(0, Lang::Vi), "0 KB");
        assert_eq!(format_size(1, Lang::Vi), "1 KB");
        assert_eq!(format_size(300 * 1024, Lang::Vi), "300 KB");
        assert_eq!(format_size(1536 * 1024, Lang::Vi), "1,5 MB");
        assert_eq!(format_size(1536 * 1024, Lang::En), "1.5 MB");
        assert_eq!(format_size(5 * 1024 * 1024, Lang::Vi), "5,0 MB");
    }

    /// The filters as a page uses them: the language comes from the page's `t`.
    #[test]
    fn filters_follow_the_page_language() {
        let mut env = minijinja::Environment::new();
        add_filters(&mut env);
        env.add_template(
            "p",
            "{{ loss|num(1) }} % · {{ kbps|num }} kbit/s · {{ file|size }}",
        )
        .unwrap();
        let render = |lang: Lang| {
            env.get_template("p")
                .unwrap()
                .render(minijinja::context! {
                    t => lang.dict(), loss => 0.5, kbps => 1234, file => 1536 * 1024
                })
                .unwrap()
        };
        assert_eq!(render(Lang::Vi), "0,5 % · 1.234 kbit/s · 1,5 MB");
        assert_eq!(render(Lang::En), "0.5 % · 1,234 kbit/s · 1.5 MB");
    }
}
