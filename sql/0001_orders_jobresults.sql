-- The final de-duplication tables of the chief design, exactly as the seed defines them.
-- The loader's LOAD DATA ... IGNORE skips rows whose orderid is already present.

CREATE TABLE orders (
	orderid VARCHAR(73) NOT NULL,
	orderdata TEXT DEFAULT NULL,
	processedtimestamp DATETIME DEFAULT NULL,
	PRIMARY KEY (`orderid`)
) ;

CREATE TABLE jobresults (
	orderid VARCHAR(73) NOT NULL,
	userid VARCHAR(255) NOT NULL,
	factoryid VARCHAR(255) NOT NULL,
	robotid VARCHAR(255) NOT NULL,
	jobstatus VARCHAR(255) NOT NULL,
	timestamp DATETIME DEFAULT NULL,
	PRIMARY KEY (`orderid`)
);
