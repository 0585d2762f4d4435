use super::*;
use crate::store::{Origin, ServiceRecord, SpecJson};
use std::fs::OpenOptions;
use std::io::Write;

fn entry(service: &str, n: u64) -> HistoryEntry {
    HistoryEntry {
        time: "2025-01-01T00:00:00Z".into(),
        token: "ops".into(),
        action: "set_weights".into(),
        service: service.into(),
        before: None,
        after: Some(SpecJson::from_value(&serde_json::json!({ "n": n })).expect("json")),
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
    let state = state_at(3);
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

fn state_at(revision: u64) -> SavedState {
    let mut state = SavedState {
        format: STATE_FORMAT,
        ..SavedState::default()
    };
    state.services.insert(
        "auth".into(),
        ServiceRecord {
            revision,
            origin: Origin::Runtime,
            spec: None,
            promotions: Default::default(),
            updated_at: "2025-01-01T00:00:00Z".into(),
        },
    );
    state
}

fn revisions(entries: &[HistoryEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.revision).collect()
}

/// A journal's content: up to its preallocated zeros.
fn content(path: &Path) -> String {
    let bytes = fs::read(path).expect("journal");
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8(bytes[..end].to_vec()).expect("utf-8")
}

/// Writes `bytes` where the journal's next change would go, `gap` bytes further on (as a crash
/// mid-write leaves it: pages of one write can reach the disk in any order).
fn write_in_place(path: &Path, bytes: &[u8], gap: u64) {
    use std::os::unix::fs::FileExt;
    let at = content(path).len() as u64 + gap;
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .write_all_at(bytes, at)
        .expect("write");
}

#[tokio::test]
async fn a_fresh_journal_is_preallocated_and_changes_are_written_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).expect("open");
    store.save(&state_at(1)).await.expect("save");
    let path = dir.path().join(journal::JOURNAL_FILE);
    let size = fs::metadata(&path).expect("journal").len();
    assert!(size > 1 << 20, "a preallocated journal, {size} bytes");
    for n in 2..5 {
        store
            .commit(&state_at(n - 1), &state_at(n), &[entry("auth", n)])
            .await
            .expect("commit");
    }
    assert_eq!(fs::metadata(&path).expect("journal").len(), size);
    assert_eq!(
        content(&path).lines().count(),
        4,
        "the header and 3 changes"
    );
    assert_eq!(store.load().await.expect("load"), Some(state_at(4)));
}

#[tokio::test]
async fn a_change_torn_in_place_is_dropped_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).expect("open");
    store.save(&state_at(1)).await.expect("save");
    store
        .commit(&state_at(1), &state_at(2), &[entry("auth", 2)])
        .await
        .expect("commit");
    drop(store);
    // A crash during a write: the start of a line, zeros where a page did not reach the disk,
    // and the line's end, newline included.
    let path = dir.path().join(journal::JOURNAL_FILE);
    write_in_place(
        &path,
        br#"{"state":{"format":1,"services":{"auth":{"revis"#,
        0,
    );
    write_in_place(&path, b"ion\":3}}},\"history\":[]}\n", 100);
    let store = FileStore::open(dir.path()).expect("reopen");
    assert_eq!(store.load().await.expect("load"), Some(state_at(2)));
    assert_eq!(
        revisions(&store.read_history(None, 10).await.expect("read")),
        vec![2]
    );
    // Recovery started a fresh journal; a torn write there is dropped the same way.
    write_in_place(&path, br#"{"history":[{"time":"#, 0);
    drop(store);
    let store = FileStore::open(dir.path()).expect("reopen again");
    store
        .commit(&state_at(2), &state_at(3), &[entry("auth", 3)])
        .await
        .expect("commit");
    drop(store);
    let store = FileStore::open(dir.path()).expect("reopen a third time");
    assert_eq!(store.load().await.expect("load"), Some(state_at(3)));
    assert_eq!(
        revisions(&store.read_history(None, 10).await.expect("read")),
        vec![2, 3]
    );
}

fn append_raw(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open")
        .write_all(bytes)
        .expect("append");
}

#[tokio::test]
async fn a_commit_is_one_journal_line_and_state_json_follows_at_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).expect("open");
    // A new folder gets its state.json at the first change.
    store
        .commit(&SavedState::default(), &state_at(1), &[])
        .await
        .expect("commit");
    let on_disk = fs::read(dir.path().join(STATE_FILE)).expect("state.json");
    store
        .commit(&state_at(1), &state_at(2), &[entry("auth", 2)])
        .await
        .expect("commit");
    // Durable in the journal; state.json untouched until the next checkpoint.
    assert_eq!(
        fs::read(dir.path().join(STATE_FILE)).expect("state.json"),
        on_disk
    );
    let journal = content(&dir.path().join(journal::JOURNAL_FILE));
    assert_eq!(journal.lines().count(), 2, "{journal}");
    assert_eq!(store.load().await.expect("load"), Some(state_at(2)));
    // A reopen (a restart) checkpoints: state.json holds the journalled state.
    drop(store);
    let store = FileStore::open(dir.path()).expect("reopen");
    let saved: SavedState =
        serde_json::from_slice(&fs::read(dir.path().join(STATE_FILE)).expect("state.json"))
            .expect("parse");
    assert_eq!(saved, state_at(2));
    assert_eq!(store.load().await.expect("load"), Some(state_at(2)));
    assert_eq!(
        revisions(&store.read_history(None, 10).await.expect("read")),
        vec![2]
    );
}

#[tokio::test]
async fn after_a_crash_the_journal_restores_the_state_and_exactly_the_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).expect("open");
    store.save(&state_at(1)).await.expect("save");
    store
        .commit(&state_at(1), &state_at(2), &[entry("auth", 2)])
        .await
        .expect("commit");
    store
        .append_history(&entry("web", 3))
        .await
        .expect("append");
    store
        .commit(
            &state_at(2),
            &state_at(4),
            &[entry("auth", 4), entry("auth", 5)],
        )
        .await
        .expect("commit");
    drop(store);
    // What a crash can leave: history lines lost or half written (never synced), and a change
    // cut short in the journal (never acknowledged).
    let history = dir.path().join(HISTORY_FILE);
    let text = fs::read_to_string(&history).expect("history");
    let first = text.lines().next().expect("a line").len() + 1;
    fs::write(&history, &text.as_bytes()[..first + 7]).expect("cut history");
    append_raw(
        &dir.path().join(journal::JOURNAL_FILE),
        br#"{"state":{"format":1,"serv"#,
    );
    let store = FileStore::open(dir.path()).expect("reopen");
    assert_eq!(store.load().await.expect("load"), Some(state_at(4)));
    assert_eq!(
        revisions(&store.read_history(None, 10).await.expect("read")),
        vec![2, 3, 4, 5]
    );
    // The same again (a crash during recovery leaves the same files) changes nothing.
    drop(store);
    let store = FileStore::open(dir.path()).expect("reopen again");
    assert_eq!(store.load().await.expect("load"), Some(state_at(4)));
    assert_eq!(
        revisions(&store.read_history(None, 10).await.expect("read")),
        vec![2, 3, 4, 5]
    );
    store
        .commit(&state_at(4), &state_at(6), &[entry("auth", 6)])
        .await
        .expect("commit");
    assert_eq!(
        revisions(&store.read_history(None, 10).await.expect("read")),
        vec![2, 3, 4, 5, 6]
    );
}

#[tokio::test]
async fn the_journal_checkpoints_when_it_grows_and_stays_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).expect("open");
    let mut state = state_at(1);
    // About 20 KB a line: the 1 MiB journal checkpoints within ~50 changes.
    for n in 0..400 {
        state.services.get_mut("auth").expect("auth").updated_at = format!("{n:020000}");
        store
            .commit(&state_at(1), &state, &[])
            .await
            .expect("commit");
    }
    let journal = fs::metadata(dir.path().join(journal::JOURNAL_FILE)).expect("journal");
    assert!(
        journal.len() < 1_200_000,
        "journal of {} bytes",
        journal.len()
    );
    let saved: SavedState =
        serde_json::from_slice(&fs::read(dir.path().join(STATE_FILE)).expect("state.json"))
            .expect("parse");
    assert_ne!(saved, state_at(1), "state.json was never checkpointed");
    assert_eq!(store.load().await.expect("load"), Some(state));
}

#[tokio::test]
async fn a_state_folder_from_before_the_journal_opens_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join(STATE_FILE),
        atomic::pretty_json(&state_at(7), "state").expect("json"),
    )
    .expect("state.json");
    let mut lines = serde_json::to_vec(&entry("auth", 7)).expect("json");
    lines.extend_from_slice(b"\n{\"time\":\"20");
    fs::write(dir.path().join(HISTORY_FILE), &lines).expect("history");
    let store = FileStore::open(dir.path()).expect("open");
    assert_eq!(store.load().await.expect("load"), Some(state_at(7)));
    store
        .append_history(&entry("auth", 8))
        .await
        .expect("append");
    assert_eq!(
        revisions(&store.read_history(None, 10).await.expect("read")),
        vec![7, 8]
    );
}

/// The journal line is built by hand so each history entry is encoded once; it must be the
/// very line `serde_json` writes for the change, so that recovery reads it back.
#[test]
fn an_encoded_change_is_the_line_serde_writes_and_its_history_lines() {
    #[derive(serde::Serialize)]
    struct Change<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        state: Option<&'a SavedState>,
        history: &'a [HistoryEntry],
    }
    let state = state_at(4);
    let history = [entry("web", 2), entry("auth", 3)];
    for (state, history) in [
        (Some(&state), &history[..]),
        (Some(&state), &[][..]),
        (None, &history[..1]),
        (None, &history[..]),
    ] {
        let encoded = journal::encode(state, history).expect("encode");
        let mut expected = serde_json::to_vec(&Change { state, history }).expect("serde");
        expected.push(b'\n');
        assert_eq!(
            String::from_utf8_lossy(encoded.line()),
            String::from_utf8_lossy(&expected)
        );
        let lines: Vec<HistoryEntry> = String::from_utf8(encoded.history_lines().to_vec())
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("history line"))
            .collect();
        assert_eq!(lines, history);
    }
}
