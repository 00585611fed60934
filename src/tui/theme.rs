//! Colour themes: `themes/*.toml` define every style the views use; views never name a colour.

use anyhow::{anyhow, bail, Context, Result};
use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// Themes shipped in the binary (the files in `themes/`).
pub const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    italic: bool,
    #[serde(default)]
    underline: bool,
    #[serde(default)]
    reversed: bool,
    #[serde(default)]
    dim: bool,
}

macro_rules! theme_roles {
    ($($role:ident: $doc:literal),* $(,)?) => {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ThemeFile {
            name: String,
            $($role: StyleSpec,)*
        }

        /// Every style the views use.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Theme {
            pub name: String,
            $(#[doc = $doc] pub $role: Style,)*
        }

        impl Theme {
            fn from_file(file: ThemeFile) -> Result<Self> {
                Ok(Self {
                    name: file.name,
                    $($role: file.$role.to_style().with_context(|| format!("in [{}]", stringify!($role)))?,)*
                })
            }

            /// Every colour of every style through `f`.
            fn map_colours(mut self, f: impl Fn(Color) -> Color) -> Self {
                $(self.$role = Style {
                    fg: self.$role.fg.map(&f),
                    bg: self.$role.bg.map(&f),
                    underline_color: self.$role.underline_color.map(&f),
                    ..self.$role
                };)*
                self
            }

            /// Every style without its colours (attributes kept), for `NO_COLOR`.
            fn strip_colours(mut self) -> Self {
                $(self.$role = Style {
                    fg: None,
                    bg: None,
                    underline_color: None,
                    ..self.$role
                };)*
                self
            }
        }
    };
}

theme_roles! {
    base: "Panel background and ordinary text",
    border: "Panel borders",
    border_focus: "Border of the focused panel",
    title: "Panel titles",
    context: "Prompt and context tokens in the live view",
    mask: "Masked positions",
    fresh: "Tokens committed in the step shown",
    committed: "Tokens committed in earlier steps",
    eos: "End-of-text tokens",
    span: "Masked spans in the editor",
    cursor: "The editor cursor",
    selection: "Selected text",
    label: "Parameter names and stat labels",
    value: "Parameter values and stats",
    invalid: "A parameter value that does not validate",
    status: "The status bar",
    key: "Key names in the legend and help",
    error: "Error messages",
    ok: "Success messages",
    disagree: "Positions where comparison lanes disagree",
    conf_low: "Confidence below 0.25",
    conf_mid: "Confidence 0.25 to 0.5",
    conf_high: "Confidence 0.5 to 0.8",
    conf_top: "Confidence above 0.8",
}

/// Whether colours are off: `NO_COLOR` set to anything but the empty string (no-color.org).
pub fn no_colour() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether the terminal says it shows 24-bit colour (`COLORTERM=truecolor` or `24bit`).
pub fn truecolor() -> bool {
    std::env::var("COLORTERM").is_ok_and(|v| {
        let v = v.to_ascii_lowercase();
        v.contains("truecolor") || v.contains("24bit")
    })
}

/// The xterm 256-colour palette entry nearest to an RGB colour: the 6x6x6 cube or the grey
/// ramp, whichever is closer.
pub fn nearest_256(r: u8, g: u8, b: u8) -> u8 {
    const LEVELS: [i32; 6] = [0, 95, 135, 175, 215, 255];
    let level = |v: u8| -> usize {
        match v {
            0..=47 => 0,
            48..=114 => 1,
            v => ((v as usize - 35) / 40).min(5),
        }
    };
    let (ri, gi, bi) = (level(r), level(g), level(b));
    let cube = (LEVELS[ri], LEVELS[gi], LEVELS[bi]);
    let average = (r as i32 + g as i32 + b as i32) / 3;
    let grey_index = ((average - 3).max(0) / 10).min(23);
    let grey = 8 + 10 * grey_index;
    let distance = |(cr, cg, cb): (i32, i32, i32)| {
        (r as i32 - cr).pow(2) + (g as i32 - cg).pow(2) + (b as i32 - cb).pow(2)
    };
    if distance((grey, grey, grey)) < distance(cube) {
        232 + grey_index as u8
    } else {
        (16 + 36 * ri + 6 * gi + bi) as u8
    }
}

impl Theme {
    /// The theme for a terminal that does not say it shows 24-bit colour: every `#rrggbb`
    /// becomes the nearest of the 256-colour palette (which such terminals do show).
    pub fn for_256_colours(self) -> Self {
        self.map_colours(|c| match c {
            Color::Rgb(r, g, b) => Color::Indexed(nearest_256(r, g, b)),
            other => other,
        })
    }

    /// The theme for a terminal without colours (`NO_COLOR`): no colour at all, and the states
    /// that colour alone showed are marked by attributes: the cursor and the tokens committed in
    /// the step shown reversed, the selection and masked spans underlined.
    pub fn monochrome(self) -> Self {
        let mut t = self.strip_colours();
        t.cursor = t.cursor.add_modifier(Modifier::REVERSED);
        t.fresh = t.fresh.add_modifier(Modifier::REVERSED | Modifier::BOLD);
        t.selection = t.selection.add_modifier(Modifier::UNDERLINED);
        t.span = t.span.add_modifier(Modifier::UNDERLINED | Modifier::BOLD);
        t.disagree = t.disagree.add_modifier(Modifier::UNDERLINED);
        t.border_focus = t.border_focus.add_modifier(Modifier::BOLD);
        t.error = t.error.add_modifier(Modifier::BOLD);
        // The prompt reads apart from generated text (ghost proposals are italic), and F2's
        // four confidence bands get attributes in place of colours.
        t.context = t.context.add_modifier(Modifier::DIM);
        t.conf_low = t.conf_low.add_modifier(Modifier::DIM);
        t.conf_high = t.conf_high.add_modifier(Modifier::BOLD);
        t.conf_top = t
            .conf_top
            .add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
        t
    }
}

impl StyleSpec {
    fn to_style(&self) -> Result<Style> {
        let mut style = Style::default();
        if let Some(fg) = &self.fg {
            style = style.fg(parse_colour(fg)?);
        }
        if let Some(bg) = &self.bg {
            style = style.bg(parse_colour(bg)?);
        }
        for (on, m) in [
            (self.bold, Modifier::BOLD),
            (self.italic, Modifier::ITALIC),
            (self.underline, Modifier::UNDERLINED),
            (self.reversed, Modifier::REVERSED),
            (self.dim, Modifier::DIM),
        ] {
            if on {
                style = style.add_modifier(m);
            }
        }
        Ok(style)
    }
}

/// `#rrggbb`, a 0-255 palette index, or a name (`red`, `lightblue`, `reset`, ...).
fn parse_colour(text: &str) -> Result<Color> {
    if let Some(hex) = text.strip_prefix('#') {
        if hex.len() == 6 {
            let v = u32::from_str_radix(hex, 16).map_err(|_| anyhow!("bad colour {text:?}"))?;
            return Ok(Color::Rgb((v >> 16) as u8, (v >> 8) as u8, v as u8));
        }
        bail!("bad colour {text:?}: use #rrggbb");
    }
    if let Ok(index) = text.parse::<u8>() {
        return Ok(Color::Indexed(index));
    }
    text.parse::<Color>()
        .map_err(|_| anyhow!("unknown colour {text:?} (use #rrggbb, 0-255 or a name like \"red\")"))
}

impl Theme {
    /// Parses a theme file's text; errors name the origin, line and key.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let file: ThemeFile = toml::from_str(text).map_err(|e| anyhow!("{origin}: {e}"))?;
        Self::from_file(file).map_err(|e| anyhow!("{origin}: {e:#}"))
    }

    /// The built-in themes followed by every `*.toml` in `dir` (a user's themes folder). A broken
    /// file is an error that names it: the app does not start half-configured.
    pub fn all(dir: Option<&std::path::Path>) -> Result<Vec<Self>> {
        let mut themes: Vec<Self> = BUILTIN
            .iter()
            .map(|(n, text)| Self::parse(text, &format!("themes/{n}.toml")))
            .collect::<Result<_>>()?;
        let Some(dir) = dir.filter(|d| d.is_dir()) else {
            return Ok(themes);
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let theme = Self::parse(&text, &path.display().to_string())?;
            themes.retain(|t| t.name != theme.name);
            themes.push(theme);
        }
        Ok(themes)
    }

    pub fn builtin(name: &str) -> Option<Self> {
        BUILTIN.iter().find(|(n, _)| *n == name).map(|(n, text)| {
            Self::parse(text, &format!("themes/{n}.toml")).expect("built-in themes parse")
        })
    }

    /// Style for a confidence in [0, 1].
    pub fn confidence(&self, score: f64) -> Style {
        match score {
            s if s >= 0.8 => self.conf_top,
            s if s >= 0.5 => self.conf_high,
            s if s >= 0.25 => self.conf_mid,
            _ => self.conf_low,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Issue 29, item 13: without colour the prompt is dim, and F2's confidence bands differ by
    /// their attributes.
    #[test]
    fn without_colour_the_prompt_and_confidence_bands_stay_apart() {
        let t = Theme::builtin("dark").unwrap().monochrome();
        assert!(t.context.add_modifier.contains(Modifier::DIM));
        assert_ne!(t.context, t.committed);
        let bands = [t.conf_low, t.conf_mid, t.conf_high, t.conf_top];
        for (i, a) in bands.iter().enumerate() {
            assert!(a.fg.is_none() && a.bg.is_none());
            for b in &bands[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    use super::*;

    #[test]
    fn without_truecolor_every_colour_is_from_the_256_palette() {
        // Exact palette colours map to themselves; others to the nearest.
        assert_eq!(nearest_256(0xff, 0x87, 0x87), 210);
        assert_eq!(nearest_256(0x1c, 0x1c, 0x1c), 234);
        assert_eq!(nearest_256(0, 0, 0), 16);
        assert_eq!(nearest_256(255, 255, 255), 231);
        for (name, _) in BUILTIN {
            let theme = Theme::builtin(name).unwrap().for_256_colours();
            let debug = format!("{theme:?}");
            assert!(!debug.contains("Rgb"), "{name}: {debug}");
        }
    }

    #[test]
    fn builtin_themes_parse_and_differ() {
        let themes: Vec<Theme> = BUILTIN
            .iter()
            .map(|(n, _)| Theme::builtin(n).unwrap())
            .collect();
        assert_eq!(themes.len(), 3);
        assert_ne!(themes[0].fresh, themes[1].fresh);
    }

    #[test]
    fn user_themes_join_the_list_and_broken_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("dlm-themes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("mine.toml"),
            BUILTIN[0].1.replace("name = \"dark\"", "name = \"mine\""),
        )
        .unwrap();
        let themes = Theme::all(Some(&dir)).unwrap();
        assert_eq!(themes.last().unwrap().name, "mine");
        std::fs::write(
            dir.join("zz-broken.toml"),
            "name = \"x\"\n[base]\nfg = 12\n",
        )
        .unwrap();
        let err = Theme::all(Some(&dir)).unwrap_err().to_string();
        assert!(
            err.contains("zz-broken.toml") && err.contains("line"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let mut text = BUILTIN[0]
            .1
            .replace("bg = \"#ffd75f\"", "bg = \"not-a-colour\"");
        let err = Theme::parse(&text, "my.toml").unwrap_err().to_string();
        assert!(
            err.contains("my.toml") && err.contains("fresh") && err.contains("not-a-colour"),
            "{err}"
        );
        text = BUILTIN[0].1.replace("[mask]", "[mask]\nfgg = \"red\"");
        let err = Theme::parse(&text, "my.toml").unwrap_err().to_string();
        assert!(err.contains("line") && err.contains("fgg"), "{err}");
        let missing = BUILTIN[0].1.replace("[eos]", "[unrelated_table]");
        let err = Theme::parse(&missing, "my.toml").unwrap_err().to_string();
        assert!(
            err.contains("unrelated_table") || err.contains("eos"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod monochrome_tests {
    use super::*;

    /// Without colours, the cursor, the fresh highlight, the selection and spans are still
    /// told apart from ordinary text by attributes, and no colour is left anywhere.
    #[test]
    fn no_colour_themes_mark_states_with_attributes() {
        for (name, _) in BUILTIN {
            let t = Theme::builtin(name).unwrap().monochrome();
            for style in [t.base, t.cursor, t.fresh, t.selection, t.span, t.committed] {
                assert_eq!((style.fg, style.bg), (None, None), "{name}");
            }
            let plain = t.committed.add_modifier;
            for state in [t.cursor, t.fresh, t.selection, t.span] {
                assert_ne!(state.add_modifier, plain, "{name}: {state:?}");
            }
            assert!(t.cursor.add_modifier.contains(Modifier::REVERSED));
            assert!(t.fresh.add_modifier.contains(Modifier::REVERSED));
            assert!(t.selection.add_modifier.contains(Modifier::UNDERLINED));
        }
    }
}
