-- Objects chief-loader refused to load: LOAD DATA raised a warning other than a duplicate
-- key (a value the server would have converted, truncated or replaced), so the database
-- would have stored something other than what the file says. The load was rolled back;
-- the object is held here, with the first offending line and the server's message, and
-- later runs load everything else. An object rewritten since (another ETag) is tried
-- again; to retry the same object after fixing the table, delete its row.

CREATE TABLE load_rejects (
	table_name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	object_key VARCHAR(768) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	etag VARCHAR(128) NOT NULL,
	line BIGINT UNSIGNED DEFAULT NULL,
	reason TEXT CHARACTER SET utf8mb4 NOT NULL,
	rejected_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	PRIMARY KEY (table_name, object_key)
);
