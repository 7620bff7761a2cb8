-- Two ids are equal in the database exactly when they are equal in the executors: byte
-- for byte. 0003's utf8mb4_bin is a PAD SPACE collation, so 'x' and 'x ' were one key
-- there and LOAD DATA ... IGNORE silently dropped the second order. NO PAD binary
-- collations have different names on MariaDB (utf8mb4_nopad_bin) and Aurora MySQL 3
-- (utf8mb4_0900_bin), and Aurora MySQL 2 has none, so the key is VARBINARY: 73
-- characters of up to 4 bytes (the model's ORDER_ID_MAX_LEN), compared as bytes on
-- every engine. LOAD DATA ... CHARACTER SET utf8mb4 stores the id's UTF-8 bytes as they are.
--
-- orderdata holds the record's JSON exactly as received; a Kinesis record is up to 1 MiB,
-- more than TEXT's 65,535 bytes, so it is MEDIUMTEXT (16 MiB).

ALTER TABLE orders
	MODIFY orderid VARBINARY(292) NOT NULL,
	MODIFY orderdata MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL;
ALTER TABLE jobresults
	MODIFY orderid VARBINARY(292) NOT NULL;
