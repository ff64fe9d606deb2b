//! The directory half of the conformance suite, on every embedded backend
//! (PostgreSQL's run is in `postgres_directory.rs`).

use std::sync::Arc;

use imcore::store::{conformance, Durability, MemoryStore};
use imcore::DirectoryStore;

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            fn make() -> Arc<dyn DirectoryStore> {
                $make
            }

            suite!(@tests
                directory_tokens_are_set_replaced_and_removed,
                directory_channels_are_put_read_and_deleted,
                directory_subscribers_are_entries_paged_in_uid_order,
                directory_lists_are_per_channel_and_kind,
                directory_system_uids_have_a_version,
                directory_versions_move_with_every_change_even_concurrent,
                directory_snapshot_reads_a_channel_whole,
                directory_counts_follow_channels_and_subscribers,
            );

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn run_directory_on_one_store() {
                conformance::run_directory(make()).await;
            }
        }
    };
    (@tests $($name:ident),+ $(,)?) => {
        #[test]
        fn every_check_of_the_suite_has_a_test_of_its_own() {
            let mut here = vec![$(stringify!($name)),+];
            let mut suite: Vec<&str> =
                conformance::directory_checks().into_iter().map(|(n, _)| n).collect();
            here.sort_unstable();
            suite.sort_unstable();
            assert_eq!(here, suite);
        }

        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                conformance::$name(make()).await;
            }
        )+
    };
}

suite!(memory, Arc::new(MemoryStore::new()));
suite!(
    sled_flush,
    Arc::new(imcore::SledStore::temporary_with(Durability::Flush).expect("temporary sled store"))
);
suite!(
    sled_background,
    Arc::new(imcore::SledStore::temporary().expect("temporary sled store"))
);
