//! Every command a key can run, the panel (scope) it belongs to, its default keys and the line
//! the help shows for it: one table, so the keys, the help and `[keys]` cannot disagree.

use serde::{Deserialize, Serialize};

/// Where a binding applies. The app asks the key map with the scopes in effect, most specific
/// first (the token inspector over the live panel over everywhere), so a panel's key shadows a
/// global one only where that panel is focused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Global,
    Editor,
    Params,
    /// A parameter's value being typed.
    Value,
    Live,
    /// The token inspector, open over the live panel.
    Inspector,
    Picker,
    Download,
    Help,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::Global,
        Scope::Editor,
        Scope::Params,
        Scope::Value,
        Scope::Live,
        Scope::Inspector,
        Scope::Picker,
        Scope::Download,
        Scope::Help,
    ];

    /// The heading of the scope's section in the help.
    pub fn title(self) -> &'static str {
        match self {
            Scope::Global => "Everywhere",
            Scope::Editor => "Editor (typing writes text; [MASK:N] typed is a span of N masks)",
            Scope::Params => {
                "Parameters panel (a digit starts a new value; a letter jumps to the next \
                 parameter it starts)"
            }
            Scope::Value => "Typing a parameter's value",
            Scope::Live => "Live panel",
            Scope::Inspector => "Token inspector (open over the live panel)",
            Scope::Picker => "Model picker (typing writes a hub id)",
            Scope::Download => "Download panel",
            Scope::Help => "This help (other keys close it)",
        }
    }

    /// Printable keys type text here: a binding may not take one, and global bindings of
    /// printable keys (`?`) do not apply.
    pub fn types_text(self) -> bool {
        matches!(self, Scope::Editor | Scope::Value | Scope::Picker)
    }

    /// The scope's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Global => "everywhere",
            Scope::Editor => "the editor",
            Scope::Params => "the parameters panel",
            Scope::Value => "a value being typed",
            Scope::Live => "the live panel",
            Scope::Inspector => "the token inspector",
            Scope::Picker => "the model picker",
            Scope::Download => "the download panel",
            Scope::Help => "the help",
        }
    }
}

/// Declares [`Command`] from one table: `Variant: Scope, [default keys], "help line"`.
macro_rules! commands {
    ($($variant:ident: $scope:ident, [$($key:literal),*], $help:literal;)*) => {
        /// Everything a key can ask for. Printable keys a scope does not bind are typing (the
        /// editor's text, a parameter's value, the picker's hub id), not commands.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum Command {
            $($variant,)*
        }

        impl Command {
            pub const ALL: &'static [Command] = &[$(Command::$variant,)*];

            /// The scope the command's keys are bound in.
            pub fn scope(self) -> Scope {
                match self {
                    $(Command::$variant => Scope::$scope,)*
                }
            }

            /// The line the help shows.
            pub fn description(self) -> &'static str {
                match self {
                    $(Command::$variant => $help,)*
                }
            }

            /// The keys bound when `[keys]` does not say otherwise.
            pub fn default_keys(self) -> &'static [&'static str] {
                match self {
                    $(Command::$variant => &[$($key),*],)*
                }
            }
        }
    };
}

commands! {
    // Everywhere.
    Run: Global, ["F5", "Ctrl-R"], "denoise the masked spans (and the generation region)";
    Cancel: Global, ["Esc"], "cancel the run / clear the selection and the message";
    Quit: Global, ["Ctrl-Q", "Ctrl-C"], "quit (text, masks and parameters are saved)";
    Help: Global, ["F1", "?"], "show this help (? where typing does not take it)";
    FocusNext: Global, ["Tab"], "focus the next panel";
    FocusPrev: Global, ["BackTab", "Shift-Tab"], "focus the previous panel";
    MaskSelection: Global, ["Ctrl-K"], "mask the selection (a span of N tokens)";
    Unmask: Global, ["Ctrl-U"], "unmask the span at the cursor (restores its text)";
    SpanGrow: Global, ["Ctrl-Up", "Alt-Up"], "one more token in the span at the cursor";
    SpanShrink: Global, ["Ctrl-Down", "Alt-Down"], "one token fewer in the span at the cursor";
    Undo: Global, ["Ctrl-Z"], "undo the last edit";
    Redo: Global, ["Ctrl-Y"], "redo";
    SelectAll: Global, ["Ctrl-A"], "select all text";
    ScrubBack: Global, ["PageUp"], "history: one step back";
    ScrubForward: Global, ["PageDown"], "history: one step forward";
    ScrubFirst: Global, ["Ctrl-PageUp"], "history: first step";
    ScrubLast: Global, ["Ctrl-PageDown"], "history: latest step (follow live)";
    ToggleConfidence: Global, ["F2", "Ctrl-F"],
        "colour tokens by confidence, then by commit order, then plain";
    ToggleCompare: Global, ["F7", "Ctrl-X"], "compare strategies side by side";
    ToggleChat: Global, ["F3", "Ctrl-T"],
        "chat mode: the text is a user message in the model's chat template";
    ApplyResult: Global, ["F6", "Ctrl-P"], "copy the finished text into the editor";
    CycleTheme: Global, ["F8", "Ctrl-N"], "next colour theme";
    Export: Global, ["F9", "Ctrl-E"], "export the last run (JSON lines and text)";
    Reroll: Global, ["F4", "Ctrl-G"], "run again with a new random seed";
    CopyResult: Global, ["Ctrl-O"], "copy the result to the clipboard (through the terminal, OSC 52)";
    CyclePreset: Global, ["Ctrl-L"], "next preset: playground, LLaDA, Fast-dLLM, Dream, ReMDM, yours";
    ToggleCharts: Global, ["Ctrl-D"], "per-step charts: masks left, tokens committed, mean score";
    PickModel: Global, ["F10", "Alt-m"], "switch models: the embedded one or any in the hub cache";

    // The editor.
    Newline: Editor, ["Enter"], "a line break";
    DeleteBack: Editor, ["Backspace"], "delete before the cursor (a whole span at its end)";
    DeleteForward: Editor, ["Delete"], "delete after the cursor";
    DeleteWordBack: Editor, ["Ctrl-W"], "delete the word before the cursor";
    CursorLeft: Editor, ["Left"], "cursor left";
    CursorRight: Editor, ["Right"], "cursor right";
    CursorUp: Editor, ["Up"], "cursor up a row";
    CursorDown: Editor, ["Down"], "cursor down a row";
    LineStart: Editor, ["Home"], "start of the row";
    LineEnd: Editor, ["End"], "end of the row";
    WordLeft: Editor, ["Ctrl-Left", "Alt-Left"], "a word left";
    WordRight: Editor, ["Ctrl-Right", "Alt-Right"], "a word right";
    SelectLeft: Editor, ["Shift-Left"], "select left (a mouse drag selects too)";
    SelectRight: Editor, ["Shift-Right"], "select right";
    SelectUp: Editor, ["Shift-Up"], "select up a row";
    SelectDown: Editor, ["Shift-Down"], "select down a row";
    SelectLineStart: Editor, ["Shift-Home"], "select to the start of the row";
    SelectLineEnd: Editor, ["Shift-End"], "select to the end of the row";
    SelectWordLeft: Editor, ["Ctrl-Shift-Left", "Alt-Shift-Left"], "select a word left";
    SelectWordRight: Editor, ["Ctrl-Shift-Right", "Alt-Shift-Right"], "select a word right";

    // The parameters panel.
    ParamUp: Params, ["Up"], "the parameter above";
    ParamDown: Params, ["Down"], "the parameter below";
    ParamDecrease: Params, ["Left", "-"], "lower the value (or the previous choice)";
    ParamIncrease: Params, ["Right", "+", "="], "raise the value (or the next choice)";
    ParamEdit: Params, ["Enter"], "type a value (the old one selected: typing replaces it)";
    ParamFirst: Params, ["Home"], "the first parameter";
    ParamLast: Params, ["End"], "the last parameter";
    ParamPageUp: Params, ["PageUp"], "a page of parameters up";
    ParamPageDown: Params, ["PageDown"], "a page of parameters down";

    // A value being typed.
    ValueConfirm: Value, ["Enter"], "set the value (an empty one leaves it as it was)";
    ValueCancel: Value, ["Esc"], "leave the value as it was";
    ValueBackspace: Value, ["Backspace"], "delete a character (the whole selected value)";
    ValueKeep: Value, ["Left", "Right", "End"], "keep the old value and type after it";

    // The live panel.
    StepBack: Live, ["Left"], "one step back";
    StepForward: Live, ["Right"], "one step forward";
    StepFirst: Live, ["Home"], "the first step";
    StepLast: Live, ["End"], "the newest step, followed again";
    ScrollUp: Live, ["Up"], "scroll up a row (the wheel scrolls too)";
    ScrollDown: Live, ["Down"], "scroll down a row";
    PageUp: Live, ["Shift-Up"], "scroll up a page";
    PageDown: Live, ["Shift-Down"], "scroll down a page";
    PlayPause: Live, ["Space"], "pause the view where it is, or play on from there";
    Faster: Live, ["+", "="], "replay faster";
    Slower: Live, ["-"], "replay slower";
    Inspect: Live, ["i"], "open or close the token inspector (a click on a token opens it)";
    Ghosts: Live, ["g"], "show the sampler's proposals under masks and its window";
    Remask: Live, ["m"], "mark the inspected token to be masked again";
    Refine: Live, ["r"], "denoise the marked tokens again, the rest fixed";

    // The token inspector.
    TokenLeft: Inspector, ["Left"], "the token before";
    TokenRight: Inspector, ["Right"], "the token after";
    TokenUp: Inspector, ["Up"], "the token a row up";
    TokenDown: Inspector, ["Down"], "the token a row down";
    CloseInspector: Inspector, ["Esc"], "close the inspector";

    // The model picker.
    PickerUp: Picker, ["Up"], "the model above";
    PickerDown: Picker, ["Down"], "the model below (the last row is the hub id field)";
    PickerChoose: Picker, ["Enter"], "switch to the model (download a typed hub id first)";
    PickerClose: Picker, ["Esc"], "close the picker";
    PickerBackspace: Picker, ["Backspace"], "delete a character of the hub id";

    // A download.
    CancelDownload: Download, ["Esc", "q"], "cancel the download (finished files stay in the cache)";

    // The help.
    HelpUp: Help, ["Up"], "scroll the help up";
    HelpDown: Help, ["Down"], "scroll the help down";
    HelpPageUp: Help, ["PageUp"], "scroll the help up a page";
    HelpPageDown: Help, ["PageDown"], "scroll the help down a page";
}

impl Command {
    /// The command's name in `[keys]` (kebab-case: `mask-selection`).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}
