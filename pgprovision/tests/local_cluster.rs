//! A throwaway local cluster: it starts, answers queries, offers isolated databases, and leaves
//! no process or directory behind. Needs the PostgreSQL server binaries (not Docker).

mod common;

use std::time::Duration;

use pgprovision::{Postgres, Provision, ProvisionError, ProvisionedBy};
use sqlx::{Connection as _, PgConnection};

use common::{children_of, process_running, select_int, wait_until_gone};

#[tokio::test]
async fn a_local_cluster_answers_queries_and_leaves_nothing_behind_when_dropped() {
    let postgres = Postgres::start(Provision::LocalBinaries)
        .await
        .unwrap_or_else(|e| panic!("starting a local cluster: {e}"));
    assert_eq!(postgres.provisioned_by(), ProvisionedBy::LocalBinaries);
    assert!(
        postgres
            .server_version()
            .starts_with(|c: char| c.is_ascii_digit()),
        "server version {:?}",
        postgres.server_version()
    );
    assert_eq!(select_int(postgres.url(), 1).await, 1);

    let port = postgres.settings().get("port").cloned().unwrap_or_default();
    assert!(
        postgres
            .url()
            .contains(&format!("127.0.0.1:{port}/postgres")),
        "settings port {port:?} does not match URL {}",
        postgres.url()
    );
    assert_eq!(
        postgres.settings().get("fsync").map(String::as_str),
        Some("off")
    );
    assert_eq!(
        postgres
            .settings()
            .get("max_connections")
            .map(String::as_str),
        Some("300")
    );

    let pid = postgres
        .postmaster_pid()
        .expect("a local cluster has a postmaster pid");
    let dir = postgres
        .cluster_dir()
        .expect("a local cluster has a dir")
        .to_path_buf();
    assert!(process_running(pid), "postmaster {pid} is not running");
    assert!(dir.join("data").join("PG_VERSION").is_file());
    let mut pids = children_of(pid);
    assert!(
        !pids.is_empty(),
        "the postmaster {pid} has no child processes"
    );
    pids.push(pid);

    postgres.stop();

    // Drop waits for the shutdown, so this is immediate; the patience only avoids flakiness.
    let left = wait_until_gone(&pids, &dir, Duration::from_secs(2));
    assert!(left.is_empty(), "left behind after drop: {left:?}");
}

#[tokio::test]
async fn a_database_created_from_a_template_has_the_template_data() {
    let postgres = pgprovision::shared().unwrap_or_else(|e| panic!("{e}"));
    let template_url = postgres
        .fresh_database()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let template = template_url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    {
        let mut connection = PgConnection::connect(&template_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {template_url}: {e}"));
        sqlx::raw_sql("CREATE TABLE seed (id int PRIMARY KEY, name text); INSERT INTO seed VALUES (1, 'a'), (2, 'b');")
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("seeding the template: {e}"));
        // A template must have no other sessions while it is copied.
        connection.close().await.unwrap_or_else(|e| panic!("{e}"));
    }

    let copy_name = format!("{template}_copy");
    let copy_url = postgres
        .create_database(&copy_name, Some(&template))
        .await
        .unwrap_or_else(|e| panic!("creating {copy_name} from {template}: {e}"));
    assert_eq!(copy_url, postgres.url_for_database(&copy_name));
    let mut connection = PgConnection::connect(&copy_url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {copy_url}: {e}"));
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM seed ORDER BY id")
        .fetch_all(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("reading the copy: {e}"));
    assert_eq!(names, ["a", "b"]);

    // WITH (FORCE): dropping works even while we are still connected.
    postgres
        .drop_database(&copy_name)
        .await
        .unwrap_or_else(|e| panic!("dropping {copy_name}: {e}"));
    postgres
        .drop_database(&template)
        .await
        .unwrap_or_else(|e| panic!("dropping {template}: {e}"));
    let gone = PgConnection::connect(&copy_url).await;
    assert!(
        gone.is_err(),
        "{copy_url} still accepts connections after drop_database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_databases_are_distinct_and_usable() {
    let postgres = pgprovision::shared().unwrap_or_else(|e| panic!("{e}"));
    let mut urls = Vec::new();
    for _ in 0..3 {
        urls.push(
            postgres
                .fresh_database()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let mut unique = urls.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        urls.len(),
        "duplicate fresh databases: {urls:?}"
    );
    for url in &urls {
        assert_eq!(select_int(url, 7).await, 7);
    }
}

#[tokio::test]
async fn invalid_database_names_are_rejected() {
    let postgres = pgprovision::shared().unwrap_or_else(|e| panic!("{e}"));
    for bad in ["", "9lives", "a-b", "x\"; DROP DATABASE postgres; --"] {
        let created = postgres.create_database(bad, None).await;
        assert!(
            matches!(created, Err(ProvisionError::InvalidDatabaseName { .. })),
            "create_database({bad:?}) gave {created:?}"
        );
        let dropped = postgres.drop_database(bad).await;
        assert!(
            matches!(dropped, Err(ProvisionError::InvalidDatabaseName { .. })),
            "drop_database({bad:?}) gave {dropped:?}"
        );
    }
    let bad_template = postgres
        .create_database("fine_name", Some("bad name"))
        .await;
    assert!(
        matches!(
            bad_template,
            Err(ProvisionError::InvalidDatabaseName { .. })
        ),
        "{bad_template:?}"
    );
    assert_eq!(
        select_int(postgres.url(), 1).await,
        1,
        "the server is still fine"
    );
}

#[tokio::test]
async fn a_server_given_by_url_is_used_as_is_and_only_our_databases_are_dropped() {
    let shared = pgprovision::shared().unwrap_or_else(|e| panic!("{e}"));
    let by_url = Postgres::start(Provision::Url(shared.url().to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_url.provisioned_by(), ProvisionedBy::Url);
    assert_eq!(by_url.url(), shared.url());
    assert_eq!(by_url.server_version(), shared.server_version());
    assert!(by_url.settings().is_empty());
    assert_eq!(by_url.postmaster_pid(), None);

    // A database someone else made is off limits.
    let theirs = shared
        .fresh_database()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let theirs_name = theirs.rsplit('/').next().unwrap_or_default();
    let refused = by_url.drop_database(theirs_name).await;
    assert!(
        matches!(refused, Err(ProvisionError::NotOurs { .. })),
        "{refused:?}"
    );
    assert_eq!(
        select_int(&theirs, 3).await,
        3,
        "their database is untouched"
    );

    let ours = by_url
        .fresh_database()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ours_name = ours.rsplit('/').next().unwrap_or_default();
    by_url
        .drop_database(ours_name)
        .await
        .unwrap_or_else(|e| panic!("dropping our own database: {e}"));

    // Dropping a Url handle leaves the server running.
    by_url.stop();
    assert_eq!(select_int(shared.url(), 1).await, 1);
}

#[tokio::test]
async fn an_unreachable_url_fails_with_the_url_named_and_the_password_hidden() {
    // Port 1 on localhost: nothing listens there, the connection is refused at once.
    let error = Postgres::start(Provision::Url(
        "postgres://app:hunter2@127.0.0.1:1/app".to_owned(),
    ))
    .await
    .expect_err("nothing listens on port 1");
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:1/app"), "{message}");
    assert!(!message.contains("hunter2"), "password leaked: {message}");
}

/// `shared()` works from sync code and from inside both runtime flavours, and is one instance.
#[test]
fn shared_is_one_instance_from_sync_code_and_any_runtime() {
    let from_sync = pgprovision::shared().unwrap_or_else(|e| panic!("{e}"));
    let current_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a runtime");
    let from_current = current_thread
        .block_on(async { pgprovision::shared() })
        .unwrap_or_else(|e| panic!("{e}"));
    let multi_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a runtime");
    let from_multi = multi_thread
        .block_on(async { pgprovision::shared() })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(std::ptr::eq(from_sync, from_current));
    assert!(std::ptr::eq(from_sync, from_multi));
    let answer = current_thread.block_on(select_int(from_sync.url(), 5));
    assert_eq!(answer, 5);
}
