//! The [`DirectoryStore`] half of the suite: the same functions on every
//! backend. Each panics when the store breaks the contract; each uses
//! names of its own, so one store can run them all.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::directory::{
    AccessList, ChannelInfo, ChannelSnapshot, DirectoryCounts, DirectoryStore, StoredToken,
};
use crate::model::{Channel, ChannelId, ChannelType, Uid};
use crate::session::{DeviceFlag, DeviceLevel};

/// One function of the directory suite, as [`directory_checks`] lists it.
pub type DirectoryCheck =
    fn(Arc<dyn DirectoryStore>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Every function of the directory suite with its name.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// use std::sync::Arc;
/// for (name, check) in imcore::store::conformance::directory_checks() {
///     check(Arc::new(imcore::MemoryStore::new())).await;
///     println!("{name}: ok");
/// }
/// # }
/// ```
pub fn directory_checks() -> Vec<(&'static str, DirectoryCheck)> {
    macro_rules! named {
        ($($name:ident),+ $(,)?) => {
            vec![$((stringify!($name), (|s| Box::pin($name(s))) as DirectoryCheck)),+]
        };
    }
    named![
        directory_tokens_are_set_replaced_and_removed,
        directory_channels_are_put_read_and_deleted,
        directory_subscribers_are_entries_paged_in_uid_order,
        directory_lists_are_per_channel_and_kind,
        directory_system_uids_have_a_version,
        directory_versions_move_with_every_change_even_concurrent,
        directory_snapshot_reads_a_channel_whole,
        directory_counts_follow_channels_and_subscribers,
    ]
}

/// Runs every function of the directory suite against `store`.
pub async fn run_directory(store: Arc<dyn DirectoryStore>) {
    for (_, check) in directory_checks() {
        check(store.clone()).await;
    }
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A prefix no other call of the suite uses, so that one store can run
/// every function (and the same one twice).
fn fresh(what: &str) -> String {
    format!(
        "{what}{}x{}",
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

fn uid(s: &str) -> Uid {
    Uid::new(s).expect("valid uid")
}

fn uids(prefix: &str, n: usize) -> Vec<Uid> {
    (0..n).map(|i| uid(&format!("{prefix}-{i:05}"))).collect()
}

fn group(s: &str) -> Channel {
    Channel::group(s).expect("valid channel id")
}

fn set(v: Vec<Uid>) -> BTreeSet<Uid> {
    v.into_iter().collect()
}

/// Tokens are per user and device kind: set, replaced, read, removed.
pub async fn directory_tokens_are_set_replaced_and_removed(store: Arc<dyn DirectoryStore>) {
    let u = uid(&fresh("tok"));
    let t = |token: &str, level| StoredToken {
        token: token.into(),
        level,
    };
    assert_eq!(store.token(&u, DeviceFlag::Web).await.expect("token"), None);
    store
        .set_token(&u, DeviceFlag::Web, &t("one", DeviceLevel::Master))
        .await
        .expect("set");
    store
        .set_token(&u, DeviceFlag::App, &t("two", DeviceLevel::Slave))
        .await
        .expect("set");
    store
        .set_token(&u, DeviceFlag::Web, &t("three", DeviceLevel::Slave))
        .await
        .expect("replace");
    let web = store.token(&u, DeviceFlag::Web).await.expect("token");
    assert_eq!(web, Some(t("three", DeviceLevel::Slave)), "replaced");
    let app = store.token(&u, DeviceFlag::App).await.expect("token");
    assert_eq!(app, Some(t("two", DeviceLevel::Slave)), "per device kind");
    assert!(store
        .remove_token(&u, DeviceFlag::Web)
        .await
        .expect("remove"));
    assert!(!store
        .remove_token(&u, DeviceFlag::Web)
        .await
        .expect("remove"));
    assert_eq!(store.token(&u, DeviceFlag::Web).await.expect("token"), None);
    assert!(store
        .token(&u, DeviceFlag::App)
        .await
        .expect("token")
        .is_some());
}

/// A channel's record is put, replaced and read; deleting it removes its
/// subscribers (from both sides) and lists, and its version goes on.
pub async fn directory_channels_are_put_read_and_deleted(store: Arc<dyn DirectoryStore>) {
    let p = fresh("ch");
    let ch = group(&p);
    let owner = uid(&format!("{p}-owner"));
    assert_eq!(store.channel(&ch).await.expect("channel"), None);
    assert_eq!(store.delete_channel(&ch).await.expect("delete"), None);
    assert_eq!(store.channel_version(&ch).await.expect("version"), 0);
    let info = ChannelInfo {
        owner: Some(owner.clone()),
        ..ChannelInfo::default()
    };
    let v1 = store.put_channel(&ch, &info).await.expect("put");
    assert!(v1 >= 1);
    assert_eq!(
        store.channel(&ch).await.expect("channel"),
        Some(info.clone())
    );
    let banned = ChannelInfo {
        ban: true,
        send_ban: true,
        ..info.clone()
    };
    let v2 = store.put_channel(&ch, &banned).await.expect("put");
    assert!(v2 > v1);
    assert_eq!(store.channel(&ch).await.expect("channel"), Some(banned));
    let members = uids(&p, 3);
    store.add_subscribers(&ch, &members).await.expect("add");
    store
        .add_to_list(AccessList::Black, &ch, &members[..1])
        .await
        .expect("list");
    let v3 = store
        .delete_channel(&ch)
        .await
        .expect("delete")
        .expect("existed");
    assert!(v3 > v2);
    assert_eq!(store.channel_version(&ch).await.expect("version"), v3);
    assert_eq!(store.channel(&ch).await.expect("channel"), None);
    assert!(store
        .subscribers(&ch, None, 10)
        .await
        .expect("subs")
        .is_empty());
    assert!(!store.is_subscriber(&ch, &members[0]).await.expect("is"));
    assert!(store.channels_of(&members[0]).await.expect("of").is_empty());
    assert!(store
        .list(AccessList::Black, &ch)
        .await
        .expect("list")
        .is_empty());
    let again = store.put_channel(&ch, &info).await.expect("re-create");
    assert!(again > v3, "a re-created channel's version goes on");
    assert!(store
        .subscribers(&ch, None, 10)
        .await
        .expect("subs")
        .is_empty());
}

/// Subscribers are entries of their own: added once however often, paged
/// in uid order, removed, listed from the user's side.
pub async fn directory_subscribers_are_entries_paged_in_uid_order(store: Arc<dyn DirectoryStore>) {
    let p = fresh("sub");
    let (ch, other) = (group(&p), group(&format!("{p}-other")));
    let all = uids(&p, 25);
    // Added out of order, and some twice.
    let mut shuffled: Vec<Uid> = all.iter().rev().cloned().collect();
    shuffled.extend(all[..5].iter().cloned());
    store.add_subscribers(&ch, &shuffled).await.expect("add");
    store.add_subscribers(&other, &all[..1]).await.expect("add");
    let mut read = Vec::new();
    let mut after: Option<Uid> = None;
    loop {
        let page = store
            .subscribers(&ch, after.as_ref(), 10)
            .await
            .expect("page");
        assert!(page.len() <= 10);
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        read.extend(page);
    }
    assert_eq!(read, all, "each once, ascending, across pages");
    assert!(store.is_subscriber(&ch, &all[7]).await.expect("is"));
    let outsider = uid(&format!("{p}-outsider"));
    assert!(!store.is_subscriber(&ch, &outsider).await.expect("is"));
    let mut of = store.channels_of(&all[0]).await.expect("of");
    of.sort();
    let mut want = vec![ch.clone(), other.clone()];
    want.sort();
    assert_eq!(of, want);
    store
        .remove_subscribers(&ch, &[all[0].clone(), all[3].clone(), outsider.clone()])
        .await
        .expect("remove");
    assert!(!store.is_subscriber(&ch, &all[0]).await.expect("is"));
    assert_eq!(store.channels_of(&all[0]).await.expect("of"), vec![other]);
    assert!(store.channels_of(&all[3]).await.expect("of").is_empty());
    let left = store.subscribers(&ch, None, 100).await.expect("subs");
    assert_eq!(left.len(), 23);
    assert!(store.subscribers(&ch, None, 0).await.is_err(), "limit 0");
}

/// Black- and whitelists are per channel and per kind; set replaces, an
/// empty set clears; a user's own person channel holds that user's lists.
pub async fn directory_lists_are_per_channel_and_kind(store: Arc<dyn DirectoryStore>) {
    let p = fresh("list");
    let ch = group(&p);
    let own = Channel::new(
        ChannelId::from(uid(&format!("{p}-me"))),
        ChannelType::PERSON,
    );
    let u = uids(&p, 4);
    store
        .add_to_list(AccessList::Black, &ch, &u[..2])
        .await
        .expect("add");
    store
        .add_to_list(AccessList::White, &ch, &u[2..3])
        .await
        .expect("add");
    store
        .add_to_list(AccessList::Black, &own, &u[3..])
        .await
        .expect("add");
    assert_eq!(
        store.list(AccessList::Black, &ch).await.expect("list"),
        u[..2].to_vec()
    );
    assert_eq!(
        store.list(AccessList::White, &ch).await.expect("list"),
        u[2..3].to_vec()
    );
    assert_eq!(
        store.list(AccessList::Black, &own).await.expect("list"),
        u[3..].to_vec()
    );
    store
        .remove_from_list(AccessList::Black, &ch, &u[..1])
        .await
        .expect("remove");
    assert_eq!(
        store.list(AccessList::Black, &ch).await.expect("list"),
        u[1..2].to_vec()
    );
    store
        .set_list(AccessList::Black, &ch, &u[2..])
        .await
        .expect("set");
    assert_eq!(
        set(store.list(AccessList::Black, &ch).await.expect("list")),
        set(u[2..].to_vec())
    );
    store
        .set_list(AccessList::White, &ch, &[])
        .await
        .expect("clear");
    assert!(store
        .list(AccessList::White, &ch)
        .await
        .expect("list")
        .is_empty());
    assert!(
        store.channel(&ch).await.expect("channel").is_none(),
        "lists need no channel record"
    );
}

/// System uids are a set with a version of its own.
pub async fn directory_system_uids_have_a_version(store: Arc<dyn DirectoryStore>) {
    let p = fresh("sys");
    let u = uids(&p, 3);
    let v0 = store.system_version().await.expect("version");
    let v1 = store.set_system(&u, true).await.expect("set");
    assert!(v1 > v0);
    let now = set(store.system_uids().await.expect("uids"));
    assert!(u.iter().all(|x| now.contains(x)));
    let v2 = store.set_system(&u[..1], false).await.expect("unset");
    assert!(v2 > v1);
    assert_eq!(store.system_version().await.expect("version"), v2);
    let now = set(store.system_uids().await.expect("uids"));
    assert!(!now.contains(&u[0]) && now.contains(&u[1]) && now.contains(&u[2]));
}

/// Every change moves its channel's version, each call to a version of
/// its own even when many run at once, and nothing is lost.
pub async fn directory_versions_move_with_every_change_even_concurrent(
    store: Arc<dyn DirectoryStore>,
) {
    const TASKS: usize = 8;
    const EACH: usize = 10;
    let p = fresh("ver");
    let ch = group(&p);
    let mut seen = vec![store.channel_version(&ch).await.expect("version")];
    seen.push(
        store
            .put_channel(&ch, &ChannelInfo::default())
            .await
            .expect("put"),
    );
    let u = uids(&p, 2);
    seen.push(store.add_subscribers(&ch, &u).await.expect("add"));
    seen.push(
        store
            .remove_subscribers(&ch, &u[..1])
            .await
            .expect("remove"),
    );
    seen.push(
        store
            .add_to_list(AccessList::Black, &ch, &u)
            .await
            .expect("add"),
    );
    seen.push(
        store
            .remove_from_list(AccessList::Black, &ch, &u)
            .await
            .expect("rm"),
    );
    seen.push(
        store
            .set_list(AccessList::White, &ch, &u)
            .await
            .expect("set"),
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "each change moves the version: {seen:?}"
    );
    let before = *seen.last().expect("versions");
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, ch, p) = (store.clone(), ch.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..EACH {
                let one = uid(&format!("{p}-t{t}-{i}"));
                versions.push(store.add_subscribers(&ch, &[one]).await.expect("add"));
            }
            versions
        }));
    }
    let mut versions = BTreeSet::new();
    for task in tasks {
        for v in task.await.expect("task") {
            assert!(v > before);
            assert!(versions.insert(v), "version {v} given twice");
        }
    }
    assert_eq!(
        store.channel_version(&ch).await.expect("version"),
        *versions.last().expect("some"),
        "the last change's version is the channel's"
    );
    let all = store.subscribers(&ch, None, 1_000).await.expect("subs");
    assert_eq!(all.len(), 1 + TASKS * EACH, "no concurrent add lost");
}

/// A snapshot is the version, record, first subscribers and lists, as the
/// single reads give them; an unknown channel's is empty.
pub async fn directory_snapshot_reads_a_channel_whole(store: Arc<dyn DirectoryStore>) {
    let p = fresh("snap");
    let (ch, none) = (group(&p), group(&format!("{p}-none")));
    assert_eq!(
        store.channel_snapshot(&none, 10).await.expect("snapshot"),
        ChannelSnapshot::default()
    );
    let u = uids(&p, 5);
    let info = ChannelInfo {
        owner: Some(u[0].clone()),
        send_ban: true,
        ..ChannelInfo::default()
    };
    store.put_channel(&ch, &info).await.expect("put");
    store.add_subscribers(&ch, &u).await.expect("add");
    store
        .add_to_list(AccessList::Black, &ch, &u[3..4])
        .await
        .expect("black");
    let version = store
        .add_to_list(AccessList::White, &ch, &u[1..3])
        .await
        .expect("white");
    let snap = store.channel_snapshot(&ch, 3).await.expect("snapshot");
    assert_eq!(
        snap,
        ChannelSnapshot {
            version,
            info: Some(info),
            subscribers: u[..3].to_vec(),
            black: u[3..4].to_vec(),
            white: u[1..3].to_vec(),
        }
    );
}

/// The store counts its channels and subscriptions
/// ([`DirectoryStore::counts`]): a channel's record and subscribers add to
/// them (a subscriber added twice once; subscribers of a channel without a
/// record too), removing and deleting take away. Compares counts before
/// and after its own changes, so nothing else may change the store while
/// it runs (the suite runs its functions one after another); a backend
/// that does not count (`None`) fails it.
pub async fn directory_counts_follow_channels_and_subscribers(store: Arc<dyn DirectoryStore>) {
    let counts = || async { store.counts().await.expect("counts").expect("a count") };
    let moved = |from: DirectoryCounts, to: DirectoryCounts| {
        (
            to.channels as i64 - from.channels as i64,
            to.subscriptions as i64 - from.subscriptions as i64,
        )
    };
    let p = fresh("count");
    let (a, b, bare) = (
        group(&format!("{p}-a")),
        group(&format!("{p}-b")),
        group(&format!("{p}-bare")),
    );
    let start = counts().await;
    store
        .put_channel(&a, &ChannelInfo::default())
        .await
        .expect("put");
    store
        .put_channel(&b, &ChannelInfo::default())
        .await
        .expect("put");
    // Replacing a record is no new channel.
    store
        .put_channel(&a, &ChannelInfo::default())
        .await
        .expect("put");
    let people = uids(&p, 3);
    store.add_subscribers(&a, &people).await.expect("add");
    store
        .add_subscribers(&a, &people[..1])
        .await
        .expect("add again");
    store.add_subscribers(&b, &people[..2]).await.expect("add");
    store
        .add_subscribers(&bare, &people[..1])
        .await
        .expect("add");
    assert_eq!(moved(start, counts().await), (2, 6));
    store
        .remove_subscribers(&a, &people[..1])
        .await
        .expect("remove");
    assert_eq!(moved(start, counts().await), (2, 5));
    store.delete_channel(&a).await.expect("delete");
    assert_eq!(moved(start, counts().await), (1, 3));
    store.delete_channel(&b).await.expect("delete");
    store
        .remove_subscribers(&bare, &people[..1])
        .await
        .expect("remove");
    assert_eq!(counts().await, start);
}
