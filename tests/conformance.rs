//! The storage conformance suite, run against every backend.

use std::sync::Arc;

use imcore::store::{conformance, Durability, MemoryStore, Store};

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            fn make() -> Arc<dyn Store> {
                $make
            }

            suite!(@tests
                append_assigns_contiguous_seqs_per_channel,
                append_batch_spans_channels_in_order,
                append_is_idempotent_per_sender_channel_and_number,
                a_resend_with_another_payload_conflicts,
                read_pages_both_directions,
                get_by_id_and_client_msg_no,
                setting_and_topic_are_kept,
                concurrent_appends_get_each_seq_once,
                command_queue_push_pending_ack,
                command_queue_remove_and_dedup,
                append_moves_the_head_and_the_senders_position,
                conversations_page_by_version,
                clear_unread_moves_forward_only,
                unread_is_exact_under_concurrent_senders,
                revocations_record_once_with_versions,
                concurrent_revocations_of_one_message_record_once,
                zero_limits_are_rejected,
                append_refuses_a_stored_message_id,
                history_is_never_ahead_of_conversations,
                command_resends_are_per_sender_channel_and_number,
                one_version_one_conversation_under_concurrent_appends,
                hidden_conversations_keep_the_highest_seq,
                hiding_a_conversation_takes_a_version,
                changed_after_finds_what_a_sync_needs,
                events_append_in_order_and_once_by_id,
                an_ended_stream_takes_no_more_events,
                concurrent_event_appends_get_each_seq_once,
                edits_share_the_revocation_version_and_keep_the_original,
                receipts_count_each_reader_once,
                concurrent_edits_and_reads_keep_versions_strict,
                an_edit_never_lands_after_a_revocation,
                retention_takes_extras_and_reads_even_racing,
                the_outbox_holds_each_new_message_until_done,
                outbox_batches_are_leased_and_taken_over_whole,
                concurrent_outbox_claims_never_share_an_entry,
                retention_deletes_the_oldest_through_a_seq,
                deleting_everything_keeps_the_head_and_the_seqs,
                unread_counts_only_what_is_left,
                a_resend_of_a_deleted_message_is_a_duplicate_until_purged,
                an_old_deleted_message_leaves_no_tombstone,
                deleted_messages_take_their_revocations_events_and_outbox,
                a_send_racing_a_deletion_loses_nothing,
                channels_are_walked_and_leases_held_by_one,
            );

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn run_all_on_one_store() {
                conformance::run_all(make()).await;
            }
        }
    };
    (@tests $($name:ident),+ $(,)?) => {
        /// A check added to the suite without a test of its own here
        /// would run only inside `run_all_on_one_store`.
        #[test]
        fn every_check_of_the_suite_has_a_test_of_its_own() {
            let mut here = vec![$(stringify!($name)),+];
            let mut suite: Vec<&str> = conformance::checks().into_iter().map(|(n, _)| n).collect();
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
