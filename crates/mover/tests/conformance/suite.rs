//! The list of conformance cases, as a macro that generates one test per case
//! for a backend's factory.

/// Generates one `#[tokio::test]` per conformance case for a factory expression.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@cases $factory;
            first_sync_round_trips_every_entry_kind,
            resync_without_changes_transfers_nothing,
            modify_add_delete_are_synced,
            rename_is_a_server_side_copy,
            destination_is_incremental,
            mid_upload_mismatch_retries_and_never_tears,
            persistent_mismatch_fails_transient_leaving_tree,
            failed_upload_commits_and_deletes_nothing,
            failed_manifest_write_deletes_nothing,
            failed_download_leaves_local_tree,
            empty_source_is_refused,
            unsafe_manifest_is_rejected,
            dry_run_changes_nothing,
            multipart_upload_round_trips,
            file_over_one_part_is_multipart_below_the_cutoff,
            torture_tree_round_trips,
            rclone_written_bucket_is_restored,
            destination_reuses_local_content_for_a_rename,
            destination_downloads_when_local_content_changed,
            same_size_same_mtime_rewrite_reaches_the_destination,
            destination_without_records_rehashes,
            unsupported_names_fail_the_source_naming_them,
            destination_removes_local_names_no_manifest_can_hold,
            file_rewritten_while_uploaded_is_read_again,
            file_that_keeps_changing_keeps_its_committed_version,
            vanished_and_created_files_do_not_fail_the_run,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::$case(&$factory).await;
            }
        )*
    };
}
