//! `/metrics` read with a real OpenMetrics parser while receipts arrive, and
//! `/readyz`.

use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};

use crate::INBOX_PROJECT;
use crate::harness::{RECEIPT, Service, wait_for_runs};

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

fn scrape(svc: &Service) -> Exposition {
    let reply = svc.get("/metrics");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/openmetrics-text")),
        "{reply:?}"
    );
    openmetrics_parser::openmetrics::parse_openmetrics(&reply.body)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics: {e:?}\n{}", reply.body))
}

/// The value of family `name`'s sample whose labels include `labels`
/// (a histogram gives its count); `None` when there is no such sample.
fn value(exp: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let family = exp.families.get(name)?;
    family.iter_samples().find_map(|sample| {
        let set = sample.get_labelset().ok()?;
        labels
            .iter()
            .all(|(k, v)| set.get_label_value(k) == Some(*v))
            .then(|| match &sample.value {
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => n.as_f64(),
                OpenMetricsValue::Histogram(h) => h.count.unwrap_or(0) as f64,
                other => panic!("{name}: unexpected value {other:?}"),
            })
    })
}

#[test]
fn counters_move_as_receipts_arrive() {
    let svc = Service::start(INBOX_PROJECT, &[]);
    let before = scrape(&svc);
    let accepted = |e: &Exposition| value(e, "microservice_receipts", &[("outcome", "accepted")]);
    let rejected = |e: &Exposition| value(e, "microservice_receipts", &[("outcome", "rejected")]);
    // Declared at zero before anything happened, so rate() works from the start.
    assert_eq!(accepted(&before), Some(0.0));
    assert_eq!(
        value(
            &before,
            "microservice_runs",
            &[("job", "job-1"), ("status", "success")]
        ),
        Some(0.0)
    );
    assert!(value(&before, "microservice_engine_slots", &[]).is_some_and(|n| n >= 1.0));
    assert_eq!(
        value(&before, "microservice_build_info", &[]),
        Some(1.0),
        "build info"
    );

    for _ in 0..3 {
        assert_eq!(svc.post_json("/inbox", RECEIPT).status, 202);
    }
    assert_eq!(svc.post_json("/inbox", "{not json").status, 400);
    wait_for_runs(&svc, "job-1", "success", 3);

    let after = scrape(&svc);
    assert_eq!(accepted(&after), Some(3.0));
    assert_eq!(rejected(&after), Some(1.0));
    assert_eq!(
        value(
            &after,
            "microservice_runs",
            &[("job", "job-1"), ("status", "success")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &after,
            "microservice_run_duration_seconds",
            &[("job", "job-1")]
        ),
        Some(3.0),
        "histogram count"
    );
    let journal_calls = value(
        &after,
        "microservice_plugin_calls",
        &[("plugin", "journal")],
    );
    if crate::postgres::enabled() {
        // With PostgreSQL (STORAGE=postgres) the receipts are a table: the
        // journal plugin is not loaded at all.
        assert!(
            journal_calls.is_none_or(|n| n == 0.0),
            "journal calls with PostgreSQL: {journal_calls:?}"
        );
    } else {
        // The durable inbox went through the built-in journal plugin.
        assert!(journal_calls.is_some_and(|n| n >= 3.0), "journal calls");
        assert!(
            value(
                &after,
                "microservice_plugin_call_duration_seconds",
                &[("plugin", "journal")]
            )
            .is_some_and(|n| n >= 3.0),
            "journal call histogram"
        );
    }
    assert!(
        value(
            &after,
            "microservice_queue_messages",
            &[("status", "pending")]
        )
        .is_some(),
        "queue depth"
    );
    // Flows after job-1 may still be running; the gauge comes back to zero.
    svc.poll_until(
        "microservice_runs_in_flight == 0",
        crate::harness::RUN_TIMEOUT,
        || {
            let in_flight = value(&scrape(&svc), "microservice_runs_in_flight", &[]);
            if in_flight == Some(0.0) {
                Ok(())
            } else {
                Err(format!("{in_flight:?}"))
            }
        },
    );
}

#[test]
fn readyz_reports_the_store() {
    let svc = Service::start(INBOX_PROJECT, &[]);
    assert_eq!(svc.get("/healthz").status, 200);
    let ready = svc.get("/readyz");
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.json["status"], "ready");
    assert_eq!(ready.json["checks"]["store"], "open");
    assert_eq!(svc.post_json("/readyz", "{}").status, 405);
}
