-- revision 0003_run_leases
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
)
;
CREATE TABLE events (
	position INTEGER NOT NULL, 
	stream VARCHAR(200) NOT NULL, 
	version BIGINT NOT NULL, 
	type VARCHAR(100) NOT NULL, 
	recorded_at_us BIGINT NOT NULL, 
	record BLOB NOT NULL, 
	prev_hash BLOB NOT NULL, 
	hash BLOB NOT NULL, 
	PRIMARY KEY (position)
)
;
CREATE UNIQUE INDEX events_stream_version ON events (stream, version)
;
CREATE TABLE idempotency_keys (
	"key" VARCHAR(200) NOT NULL, 
	first_position BIGINT NOT NULL, 
	count INTEGER NOT NULL, 
	digest BLOB NOT NULL, 
	PRIMARY KEY ("key")
)
;
CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'tally: events rows are immutable (UPDATE refused)'); END
;
CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'tally: events rows are immutable (DELETE refused)'); END
;
CREATE TRIGGER idempotency_keys_refuse_update BEFORE UPDATE ON idempotency_keys BEGIN SELECT RAISE(ABORT, 'tally: idempotency_keys rows are immutable (UPDATE refused)'); END
;
CREATE TRIGGER idempotency_keys_refuse_delete BEFORE DELETE ON idempotency_keys BEGIN SELECT RAISE(ABORT, 'tally: idempotency_keys rows are immutable (DELETE refused)'); END
;
CREATE TABLE checkpoints (
	name VARCHAR(200) NOT NULL, 
	position BIGINT NOT NULL, 
	code_version VARCHAR(100) NOT NULL, 
	state BLOB NOT NULL, 
	state_hash BLOB NOT NULL, 
	chain_hash BLOB NOT NULL, 
	PRIMARY KEY (name)
)
;
CREATE TABLE run_leases (
	run_id VARCHAR(100) NOT NULL, 
	owner VARCHAR(64) NOT NULL, 
	pid INTEGER NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	state VARCHAR(20) NOT NULL, 
	heartbeat_us BIGINT NOT NULL, 
	expires_us BIGINT NOT NULL, 
	cycles_done BIGINT NOT NULL, 
	cycles_planned BIGINT NOT NULL, 
	PRIMARY KEY (run_id)
)
;
INSERT INTO alembic_version (version_num) VALUES ('0003_run_leases')
;
