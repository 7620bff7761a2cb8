-- The rows are UTF-8 (orderdata is the record's JSON exactly as received, emoji included;
-- chief-loader loads with CHARACTER SET utf8mb4). 0001 keeps the seed's column definitions
-- and leaves the character set to the server default, which is latin1 on MariaDB 10.11
-- and Aurora MySQL 2: a 4-byte character would be stored as '?'. Make it utf8mb4 with a
-- binary collation, so that orderid matches exactly as the executors de-duplicate it
-- (a case-insensitive key would treat 'A…' and 'a…' as the same order).

ALTER TABLE orders CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
ALTER TABLE jobresults CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
