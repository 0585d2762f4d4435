use super::*;
use crate::store::{Origin, ServiceRecord};

fn entry(service: &str, n: u64) -> HistoryEntry {
    HistoryEntry {
        time: "2025-01-01T00:00:00Z".into(),
        token: "ops".into(),
        action: "set_weights".into(),
        service: service.into(),
        before: None,
        after: Some(serde_json::json!({ "n": n })),
        outcome: "applied".into(),
        revision: n,
        detail: None,
    }
}

#[tokio::test]
async fn saved_state_loads_back_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path().join("state")).expect("open");
    assert_eq!(store.load().await.expect("load"), None);
    let mut state = SavedState {
        format: STATE_FORMAT,
        ..SavedState::default()
    };
    state.services.insert(
        "auth".into(),
        ServiceRecord {
            revision: 3,
            origin: Origin::Runtime,
            spec: None,
            promotions: Default::default(),
            updated_at: "2025-01-01T00:00:00Z".into(),
        },
    );
    store.save(&state).await.expect("save");
    assert_eq!(store.load().await.expect("load"), Some(state));
    assert!(!store.dir().join(STATE_TMP).exists());
}

#[tokio::test]
async fn newer_state_format_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).expect("open");
    fs::write(
        dir.path().join(STATE_FILE),
        br#"{"format": 99, "services": {}}"#,
    )
    .expect("write");
    assert!(matches!(
        store.load().await,
        Err(StoreError::Format { found: 99, .. })
    ));
}

#[tokio::test]
async fn history_filters_by_service_and_keeps_the_last_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).expect("open");
    for n in 1..=5 {
        store
            .append_history(&entry(if n % 2 == 0 { "web" } else { "auth" }, n))
            .await
            .expect("append");
    }
    let auth = store.read_history(Some("auth"), 2).await.expect("read");
    assert_eq!(
        auth.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![3, 5]
    );
    let all = store.read_history(None, 100).await.expect("read");
    assert_eq!(all.len(), 5);
}

#[tokio::test]
async fn torn_history_line_is_skipped_and_later_entries_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = FileStore::open(dir.path()).expect("open");
        store
            .append_history(&entry("auth", 1))
            .await
            .expect("append");
    }
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join(HISTORY_FILE))
        .expect("open history");
    f.write_all(br#"{"time":"2025-"#).expect("write torn");
    drop(f);
    let store = FileStore::open(dir.path()).expect("reopen");
    store
        .append_history(&entry("auth", 2))
        .await
        .expect("append");
    let all = store.read_history(None, 100).await.expect("read");
    assert_eq!(
        all.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[tokio::test]
async fn a_commit_saves_the_state_and_appends_its_whole_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).expect("open");
    store
        .append_history(&entry("web", 1))
        .await
        .expect("append");
    let state = SavedState {
        format: STATE_FORMAT,
        ..SavedState::default()
    };
    let history = [entry("web", 2), entry("auth", 3)];
    store
        .commit(&SavedState::default(), &state, &history)
        .await
        .expect("commit");
    assert_eq!(store.load().await.expect("load"), Some(state.clone()));
    let all = store.read_history(None, 100).await.expect("read");
    assert_eq!(
        all.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // A commit without history changes only the state.
    store.commit(&state, &state, &[]).await.expect("commit");
    assert_eq!(store.read_history(None, 100).await.expect("read").len(), 3);
}
