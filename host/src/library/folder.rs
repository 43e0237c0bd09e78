//! The library folder, `PROJECT_DIR/library/`: shared job expressions kept
//! as files, one `.js` file per job.
//!
//! Each file opens with a few `//` comment lines of `key: value` (its front
//! matter); the rest of the file is the expression:
//!
//! ```js
//! // adaptor: @openfn/language-common@3.3.4
//! each('$.data.items[*]', fn(state => state));
//! ```
//!
//! `adaptor` is an adaptor spec as in `[jobs.<name>] adaptor`; `version`
//! may give its version on its own line instead. OpenFn's own job files
//! carry no metadata (the CLI is told the adaptor with `-a`), so this is
//! our convention, chosen to stay a valid job file that `@openfn/core` runs
//! as it is. Only the folder's top level is read, files inside it only
//! (never through a link out of it), and nothing is ever run.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::expression::SyntaxError;
use crate::project::AdaptorSpec;

/// One library file, read and checked.
#[derive(Debug, Clone)]
pub struct LibraryFile {
    pub adaptor: AdaptorSpec,
    /// The expression, without its front matter.
    pub expression: String,
}

/// What is wrong with one library file.
#[derive(Debug, Clone)]
pub struct FileProblem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, ": line {l}, column {c}")?,
            (Some(l), None) => write!(f, ": line {l}")?,
            _ => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// The folder of `project_dir`.
pub fn dir(project_dir: &Path) -> PathBuf {
    project_dir.join("library")
}

/// Every `.js` file of the folder, in name order: the good ones, and what
/// is wrong with the others. No folder is an empty library.
pub fn read(dir: &Path) -> (Vec<LibraryFile>, Vec<FileProblem>) {
    let (mut files, mut problems) = (Vec::new(), Vec::new());
    let Ok(listing) = std::fs::read_dir(dir) else {
        return (files, problems);
    };
    let mut paths: Vec<PathBuf> = listing
        .filter_map(|e| e.ok())
        // A DirEntry's type is the link's own: a link is not followed.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "js"))
        .collect();
    paths.sort();
    for path in paths {
        let problem = |line, column, message: String| FileProblem {
            file: path.clone(),
            line,
            column,
            message,
        };
        match std::fs::read_to_string(&path) {
            Err(e) => problems.push(problem(None, None, format!("cannot read it: {e}"))),
            Ok(text) => match parse(&text) {
                Ok(file) => files.push(file),
                Err(Bad::FrontMatter(line, why)) => problems.push(problem(Some(line), None, why)),
                Err(Bad::Syntax(errors)) => problems.extend(errors.into_iter().map(|e| {
                    problem(
                        Some(e.line),
                        Some(e.column),
                        format!("syntax error: {}", e.message),
                    )
                })),
            },
        }
    }
    (files, problems)
}

enum Bad {
    FrontMatter(usize, String),
    Syntax(Vec<SyntaxError>),
}

/// A file's front matter and expression. Syntax errors are placed in the
/// whole file (the front matter lines counted).
fn parse(text: &str) -> Result<LibraryFile, Bad> {
    let (mut adaptor, mut version, mut body_start) = (None, None, 0);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let Some(comment) = line.trim().strip_prefix("//") else {
            break;
        };
        body_start += line.len();
        let Some((key, value)) = comment.split_once(':') else {
            continue;
        };
        match key.trim() {
            "adaptor" => adaptor = Some((i + 1, value.trim().to_string())),
            "version" => version = Some((i + 1, value.trim().to_string())),
            _ => {}
        }
    }
    let Some((line, spec)) = adaptor else {
        return Err(Bad::FrontMatter(
            1,
            "no `// adaptor: <spec>` line at the top (e.g. `// adaptor: @openfn/language-common@3.3.4`)"
                .into(),
        ));
    };
    let mut adaptor = AdaptorSpec::parse(&spec).map_err(|why| Bad::FrontMatter(line, why))?;
    if let Some((line, v)) = version {
        if adaptor.version.is_some() {
            return Err(Bad::FrontMatter(
                line,
                "the version is given twice: in `adaptor` and in `version`".into(),
            ));
        }
        adaptor = AdaptorSpec::parse(&format!("{}@{v}", adaptor.name))
            .map_err(|why| Bad::FrontMatter(line, why))?;
    }
    let errors = crate::expression::syntax_errors(text);
    if !errors.is_empty() {
        return Err(Bad::Syntax(errors));
    }
    Ok(LibraryFile {
        adaptor,
        expression: text[body_start..].trim().to_string(),
    })
}

/// The identity of an expression, for deduplication: SHA-256 of its text,
/// surrounding white space aside.
pub fn hash(expression: &str) -> String {
    hex::encode(Sha256::digest(expression.trim().as_bytes()))
}

/// Writes `expression` into the folder as `<hash>.js` with its front
/// matter, unless a file there already holds the same expression: `false`
/// then. The file is written whole or not at all.
pub fn write(dir: &Path, adaptor: &AdaptorSpec, expression: &str) -> std::io::Result<bool> {
    let id = hash(expression);
    let (existing, _) = read(dir);
    if existing.iter().any(|f| hash(&f.expression) == id) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    let text = format!("// adaptor: {adaptor}\n{}\n", expression.trim());
    let mut staged = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut staged, text.as_bytes())?;
    staged
        .persist(dir.join(format!("{}.js", &id[..16])))
        .map_err(|e| e.error)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_and_expression() {
        let f = match parse(
            "// adaptor: @openfn/language-common\n// version: 3.3.4\n\nfn(s => s);\n",
        ) {
            Ok(f) => f,
            Err(_) => panic!("should parse"),
        };
        assert_eq!(f.adaptor.to_string(), "@openfn/language-common@3.3.4");
        assert_eq!(f.expression, "fn(s => s);");
    }

    #[test]
    fn problems_name_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.js"), "fn(s => s);\n").unwrap();
        std::fs::write(
            dir.path().join("b.js"),
            "// adaptor: @openfn/language-common\nfn(s => {\n);\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.js"),
            "// adaptor: Not A Name\nfn(s => s);\n",
        )
        .unwrap();
        let (files, problems) = read(dir.path());
        assert!(files.is_empty());
        let text: Vec<String> = problems
            .iter()
            .map(|p| p.to_string().replace(&dir.path().display().to_string(), ""))
            .collect();
        assert!(
            text[0].starts_with("/a.js: line 1: no `// adaptor"),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("/b.js: line 3, column 1: syntax error"),
            "{text:?}"
        );
        assert!(
            text[2].starts_with("/c.js: line 1: `Not A Name`"),
            "{text:?}"
        );
    }

    #[test]
    fn writing_deduplicates_by_expression() {
        let dir = tempfile::tempdir().unwrap();
        let spec = AdaptorSpec::parse("@openfn/language-common@3.3.4").unwrap();
        assert!(write(dir.path(), &spec, "fn(s => s);").unwrap());
        assert!(!write(dir.path(), &spec, "  fn(s => s);\n").unwrap());
        let (files, problems) = read(dir.path());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].adaptor, spec);
    }
}
