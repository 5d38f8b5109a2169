//! The reconnect storm at `cargo test` size: 1,000 clients connect and
//! subscribe at once through the router to a 3-node cluster (plain, then
//! persistent), then the node holding most of them is killed and its
//! clients reconnect at once. A test binary of its own, so that no other
//! scenario's cluster shares the 2 cores with it.

use quicmq_chaos::scenario::{run, Spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_clients_connects_and_after_a_kill_reconnects_and_receives() {
    let report = run(&Spec::storm(1000)).await.expect("scenario set-up");
    println!("{report}");
    assert!(report.failures().is_empty(), "{report}");
    assert!(report.connect_plain.is_some() && report.connect_persistent.is_some());
    // Routers spread new connections: the killed node held about a third.
    assert!(report.storm_clients >= 200, "{report}");
    assert_eq!(report.disconnected, report.storm_clients);
    assert_eq!(report.resumed, report.storm_clients);
    assert!(report.all_resumed.is_some() && report.all_receiving.is_some());
    assert!(
        report
            .client_endpoints
            .is_some_and(|n| (80..=100).contains(&n)),
        "25 clients per endpoint: {:?}",
        report.client_endpoints
    );
}
