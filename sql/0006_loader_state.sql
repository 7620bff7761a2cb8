-- The loader's own state per table: when its prefix was last listed whole. A run lists the
-- whole prefix once loader.full_listing_hours have passed since, so that no object is ever
-- skipped, however old its hour.

CREATE TABLE loader_state (
	table_name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	full_listing_at DATETIME(3) NOT NULL,
	PRIMARY KEY (table_name)
);
