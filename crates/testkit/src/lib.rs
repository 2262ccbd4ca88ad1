//! Test helpers shared by the crates' integration tests: the `Store` conformance suite
//! ([`store_suite`], stamped out per backend by [`store_conformance_tests!`]), end-to-end tests
//! on both backends ([`on_both_backends!`] over [`app`]) and the seeds and checks of upgrade
//! tests ([`upgrade`]), driving emulated PCs against a server ([`pc`]), and database outages
//! a test switches on and off under a running server ([`outage`]).

pub mod app;
pub mod outage;
pub mod pc;
pub mod store_suite;
pub mod upgrade;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use redeploy_core::Store;

/// A fresh store for one test, plus what must live as long as it (a temp dir) and what must
/// run after it (dropping a database).
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn Store>,
    keep: Option<Box<dyn std::any::Any + Send>>,
    cleanup: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Fixture {
    /// Wraps a store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            keep: None,
            cleanup: None,
        }
    }

    /// Keeps `value` alive until the test ends.
    pub fn keep(mut self, value: impl std::any::Any + Send) -> Self {
        self.keep = Some(Box::new(value));
        self
    }

    /// Runs `cleanup` after the test passed.
    pub fn on_finish(mut self, cleanup: impl Future<Output = ()> + Send + 'static) -> Self {
        self.cleanup = Some(Box::pin(cleanup));
        self
    }

    /// Drops the store and runs the cleanup.
    pub async fn finish(self) {
        let Self {
            store,
            keep,
            cleanup,
        } = self;
        drop(store);
        if let Some(c) = cleanup {
            c.await;
        }
        drop(keep);
    }
}

/// Stamps out one `#[tokio::test]` per conformance case. `$make` is an async fn (or closure)
/// returning a fresh [`Fixture`]. The calling crate needs `tokio` as a (dev-)dependency.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::__store_cases!($make;
            enrollment_of_a_bound_record_keeps_it_and_a_shared_hardware_id_is_no_obstacle,
            enrollment_without_hw_dev_id_is_a_new_device,
            device_lookups_and_record_seen,
            set_primary_user_changes_only_the_user_and_shared_flag,
            enrollment_token_use_count_and_expiry,
            enrollment_token_is_never_overspent_concurrently,
            api_token_lookup_by_hash_and_revoke,
            queue_order_per_device,
            concurrent_sessions_never_send_a_command_twice,
            failed_session_step_leaves_nothing_half_written,
            an_idle_session_step_writes_row_and_inventory_or_nothing,
            concurrent_idle_steps_each_take_their_message_once,
            a_session_step_inserts_observed_actions,
            answers_are_matched_by_refs,
            unanswered_sent_commands_are_listed,
            check_in_view_says_what_a_session_start_can_find,
            concurrent_check_in_views_each_get_their_own_device,
            actions_are_counted_by_day_and_state,
            action_transitions_persist_with_timeline,
            pending_action_becomes_sent_with_its_command,
            discarding_an_actions_queued_commands,
            stale_actions_are_selected_by_state_and_age,
            actions_for_readiness_of_many_devices,
            audit_is_append_only_and_ordered,
            audit_lists_newest_first_with_keyset_paging,
            device_pagination_cursor_is_stable,
            devices_sort_by_serial_in_pages,
            search_finds_every_substring_as_values_change,
            device_conditions_match_in_sql,
            inventory_upsert_keeps_latest_value,
            groups_static_and_filter_members,
            waves_are_due_in_order_and_released_once,
            actions_created_under_a_daily_cap_never_exceed_it,
            schedules_round_trip_and_come_due,
            autopilot_registry_upserts_links_and_tags_filters,
            console_sessions_expire_and_carry_their_token,
            accounts_are_unique_by_name_and_disabled_once,
            console_sessions_are_held_by_accounts_and_openid_users,
            a_due_schedule_is_claimed_by_exactly_one_of_many_tickers,
            batch_windows_are_listed_for_pending_actions_of_their_batch,
            held_actions_commands_stay_queued,
            webhooks_round_trip_and_delete_with_deliveries,
            webhook_events_are_enqueued_once_and_attempts_claimed_once,
            webhook_stale_actions_are_found_until_reported_stuck,
            disabled_webhooks_wait_and_reenabling_moves_notify_since,
            a_refused_request_plan_leaves_nothing_behind,
            concurrent_reset_requests_create_one_active_action,
            concurrent_wave_releases_create_each_action_once,
            a_wave_release_failing_midway_leaves_it_unreleased,
            the_support_trail_keeps_the_newest_messages_per_device,
            a_certificate_renewal_keeps_the_device_and_retires_the_old_one_once_seen,
            certificate_expiry_counts_enrolled_devices_only,
            actions_and_batches_list_newest_first_in_pages,
            a_paused_or_canceled_batch_releases_no_wave,
            a_cancel_skips_actions_sent_since_it_read_them,
            the_health_check_answers_and_leaves_no_lock_behind,
            push_attempts_are_claimed_once_per_pending_action,
            bulk_loaded_devices_read_back_like_enrolled_ones,
            the_readiness_census_counts_what_each_device_would_say,
            a_large_request_plan_is_written_whole,
            a_group_reset_queued_by_the_database_matches_device_by_device,
            a_bulk_group_reset_racing_single_resets_leaves_one_active_each,
            a_bulk_group_reset_of_only_stale_pcs_blocks_each_with_its_own_reason,
            bulk_writes_whose_action_ids_collide_are_refused_as_a_conflict,
        );
    };
}

/// Stamps out, for each named `async fn(testkit::app::Backend)`, a module with a `sqlite` and a
/// `postgres` test running it on that backend. The calling crate needs `tokio` as a
/// (dev-)dependency.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::app::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::app::Backend::Postgres).await;
                }
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_cases {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: $crate::Fixture = ($make)().await;
                $crate::store_suite::$case(::std::sync::Arc::clone(&fixture.store)).await;
                fixture.finish().await;
            }
        )*
    };
}
