-- Every S3 object chief-loader has loaded, so that a re-run never loads a file twice and a
-- partial failure resumes where it stopped. Object keys written by the executors are ASCII.

CREATE TABLE load_history (
	table_name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	object_key VARCHAR(768) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	etag VARCHAR(128) NOT NULL,
	size_bytes BIGINT UNSIGNED NOT NULL,
	rows_loaded BIGINT UNSIGNED NOT NULL,
	loaded_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	PRIMARY KEY (table_name, object_key),
	KEY load_history_loaded_at (table_name, loaded_at)
);
