//! A small Dockerfile reader for the deploy tests: instructions grouped into
//! stages, with the argument forms the tests look at (exec-form JSON arrays,
//! `KEY=value` pairs, `--flag=value` options).
//!
//! It follows the Dockerfile reference for what our Dockerfile uses: `\`
//! continues a line, comment lines (also inside a continued instruction)
//! and blank lines are dropped, keywords are case-insensitive. It refuses
//! what it does not handle (an `escape` parser directive, heredocs) instead
//! of misreading it. It must never be used for anything but reading.

use std::collections::BTreeMap;

/// One instruction: keyword in upper case and its arguments, continuation
/// lines joined with a space.
#[derive(Debug, Clone)]
pub struct Instruction {
    pub keyword: String,
    pub args: String,
    /// 1-based line where the instruction starts, for messages.
    pub line: usize,
}

/// A `FROM` and the instructions up to the next one.
#[derive(Debug)]
pub struct Stage {
    pub image: String,
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    pub fn all(&self, keyword: &str) -> Vec<&Instruction> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == keyword)
            .collect()
    }

    /// The last instruction with `keyword` (the one that takes effect).
    pub fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.instructions
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
    }

    /// Every `ENV` of the stage, later ones winning.
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for i in self.all("ENV") {
            for pair in i.args.split_whitespace() {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| {
                    panic!(
                        "line {}: ENV `{pair}` is not KEY=value (the legacy `ENV KEY value` form is not read here)",
                        i.line
                    )
                });
                assert!(
                    !v.contains(['"', '\'']),
                    "line {}: quoted ENV values are not read here: {pair}",
                    i.line
                );
                env.insert(k.to_string(), v.to_string());
            }
        }
        env
    }
}

pub fn parse(text: &str) -> Vec<Stage> {
    let mut instructions: Vec<Instruction> = Vec::new();
    let mut pending: Option<Instruction> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            let directive = line.trim_start_matches('#').trim().to_ascii_lowercase();
            assert!(
                !(pending.is_none() && instructions.is_empty() && directive.starts_with("escape")),
                "the escape parser directive is not supported here"
            );
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let (body, continues) = match line.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (line, false),
        };
        match pending.as_mut() {
            Some(p) => {
                p.args.push(' ');
                p.args.push_str(body);
            }
            None => {
                let (keyword, args) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
                pending = Some(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                    line: n + 1,
                });
            }
        }
        if !continues {
            let done = pending.take().unwrap();
            assert!(
                !done.args.contains("<<"),
                "line {}: heredocs are not supported here",
                done.line
            );
            instructions.push(done);
        }
    }
    assert!(
        pending.is_none(),
        "the Dockerfile ends inside a continued line"
    );

    let mut stages: Vec<Stage> = Vec::new();
    for i in instructions {
        if i.keyword == "FROM" {
            let words: Vec<&str> = i
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let (image, name) = match words.as_slice() {
                [image] => (image.to_string(), None),
                [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    (image.to_string(), Some(name.to_string()))
                }
                _ => panic!("line {}: cannot read FROM {}", i.line, i.args),
            };
            stages.push(Stage {
                image,
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(i);
        } else {
            assert!(
                i.keyword == "ARG",
                "line {}: only ARG may come before the first FROM",
                i.line
            );
        }
    }
    stages
}

/// An exec-form argument list (`["a", "b"]`).
pub fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("not an exec-form JSON array ({e}): {args}"))
}

/// Splits leading `--name=value` options from the rest of the arguments.
pub fn options(args: &str) -> (BTreeMap<String, String>, String) {
    let mut opts = BTreeMap::new();
    let mut rest = args.trim();
    while let Some(after) = rest.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let (name, value) = after[..end].split_once('=').unwrap_or((&after[..end], ""));
        opts.insert(name.to_string(), value.to_string());
        rest = after[end..].trim_start();
    }
    (opts, rest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stages_continuations_and_comments() {
        let stages = parse(
            "# syntax=docker/dockerfile:1\nARG X=1\nFROM rust:1 AS build\nRUN a \\\n    # inside\n    && b\nfrom debian:slim\nENV A=1 \\\n    B=/x\nUSER 10:0\nCMD [\"serve\"]\n",
        );
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0].name.as_deref(), Some("build"));
        assert_eq!(stages[0].instructions[0].args, "a && b");
        assert_eq!(stages[1].image, "debian:slim");
        assert_eq!(stages[1].env()["B"], "/x");
        assert_eq!(exec_form(&stages[1].last("CMD").unwrap().args), ["serve"]);
        let (opts, rest) = options("--interval=30s --retries=3 CMD [\"x\"]");
        assert_eq!(opts["retries"], "3");
        assert_eq!(rest, "CMD [\"x\"]");
    }
}
