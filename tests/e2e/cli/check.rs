//! `microservice check` on broken and good projects.

use super::run::RUN_PROJECT;
use super::{Scratch, describe, text};

#[test]
fn check_reports_the_line_of_a_broken_project_and_passes_a_good_one() {
    let good = Scratch::new(Some(RUN_PROJECT));
    let out = good.run(&["check"], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("3 jobs, 2 triggers, 1 credential"),
        "{}",
        describe(&out)
    );

    // A TOML syntax error on line 4: the parser's line and column.
    let broken = Scratch::new(Some(
        "[jobs.a]\ntrigger = \"t\"\nexpression = \"fn(s => s)\"\nadaptor = \"@openfn/language-common\n[triggers.t]\ncriteria = {}\n",
    ));
    let out = broken.run(&["check"], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("project.toml"), "{}", describe(&out));
    assert!(stderr.contains("line 4, column"), "{}", describe(&out));

    // A job naming a missing trigger: the table, the key and the table's line.
    let broken = Scratch::new(Some(
        "# a comment\n\n[triggers.t]\ncriteria = {}\n\n[jobs.a]\ntrigger = \"t2\"\nexpression = \"fn(s => s)\"\n",
    ));
    let out = broken.run(&["check"], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("[jobs.a] trigger (line 6): no trigger named `t2`"),
        "{}",
        describe(&out)
    );
}
