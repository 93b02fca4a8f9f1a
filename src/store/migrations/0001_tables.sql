-- paraph schema, version 1: one table per kind of record.
--
-- Every table keeps the store's ordered key in `store_key` (its primary key; the service reads
-- ranges of it in byte order, hence COLLATE "C") and the record in `value`, exactly as the
-- service wrote it (JSON text for the JSON records, binary for the others). The parts of the
-- key are typed, generated columns (tenant, user, document, times as timestamptz) that a DBA
-- can query and that the foreign keys and indexes below use. The views `*_records` show the
-- JSON records as jsonb.

CREATE TABLE paraph_schema (
    version integer NOT NULL,
    migrated_at timestamptz NOT NULL DEFAULT now()
);

-- One row: the number of write groups committed, bumped by each (see the store's replica
-- rules: a replica's cache of records is valid while this has not moved under it).
CREATE TABLE paraph_writes (
    single boolean PRIMARY KEY DEFAULT true CHECK (single),
    groups bigint NOT NULL
);
INSERT INTO paraph_writes (groups) VALUES (0);

-- What each group of the last few thousand wrote (values of at most 16 KiB; a larger one is
-- named with a NULL value), by its number: a replica whose cache of records is behind reads
-- the groups it missed and brings its cache up to date instead of dropping it.
CREATE TABLE paraph_changes (
    groups bigint PRIMARY KEY,
    keys text[] NOT NULL,
    removed boolean[] NOT NULL,
    vals bytea[] NOT NULL
);
-- Short-lived: kept uncompressed (compressing it cost more than writing it).
ALTER TABLE paraph_changes ALTER COLUMN vals SET STORAGE EXTERNAL;
ALTER TABLE paraph_changes ALTER COLUMN keys SET STORAGE EXTERNAL;

-- Decodes a JSON record for the views (NULL when the value is not JSON, e.g. an emptied one).
CREATE FUNCTION paraph_json(v bytea) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN convert_from(v, 'UTF8')::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- Records of a kind this version does not know (kept, never lost).
CREATE TABLE other_records (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

-- meta/: Platform markers (meta/init: when the platform was initialised).
CREATE TABLE platform_meta (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    name text GENERATED ALWAYS AS (substring(store_key from '^[^/]*/(.*)$')) STORED,
    CHECK (store_key LIKE 'meta/%')
);
COMMENT ON TABLE platform_meta IS 'Platform markers (meta/init: when the platform was initialised).';
CREATE VIEW platform_meta_records AS SELECT name, paraph_json(value) AS record FROM platform_meta;

-- operatortokens: The ids of the live platform operator tokens (one row).
CREATE TABLE platform_operator_tokens (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    CHECK (store_key = 'operatortokens')
);
COMMENT ON TABLE platform_operator_tokens IS 'The ids of the live platform operator tokens (one row).';
CREATE VIEW platform_operator_tokens_records AS SELECT paraph_json(value) AS record FROM platform_operator_tokens;

-- tenant/: One row per tenant (organisation).
CREATE TABLE tenants (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    CHECK (store_key LIKE 'tenant/%')
);
COMMENT ON TABLE tenants IS 'One row per tenant (organisation).';
CREATE VIEW tenants_records AS SELECT tenant, paraph_json(value) AS record FROM tenants;

-- user/: The users of each tenant.
CREATE TABLE users (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    user_id text GENERATED ALWAYS AS (substring(store_key from '^[^/]*/[^/]*/(.*)$')) STORED,
    CHECK (store_key LIKE 'user/%')
);
COMMENT ON TABLE users IS 'The users of each tenant.';
CREATE VIEW users_records AS SELECT tenant, user_id, paraph_json(value) AS record FROM users;

-- userlist/: Every user of a tenant in one record (read inside transactions).
CREATE TABLE user_lists (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    CHECK (store_key LIKE 'userlist/%')
);
COMMENT ON TABLE user_lists IS 'Every user of a tenant in one record (read inside transactions).';
CREATE VIEW user_lists_records AS SELECT tenant, paraph_json(value) AS record FROM user_lists;

-- token/: API tokens by the SHA-256 of the secret (the secret is never stored).
CREATE TABLE tokens (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    token_sha256 text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    CHECK (store_key LIKE 'token/%')
);
COMMENT ON TABLE tokens IS 'API tokens by the SHA-256 of the secret (the secret is never stored).';
CREATE VIEW tokens_records AS SELECT token_sha256, paraph_json(value) AS record FROM tokens;

-- tokenid/: The SHA-256 of the token with each id.
CREATE TABLE token_ids (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    token_id text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    CHECK (store_key LIKE 'tokenid/%')
);
COMMENT ON TABLE token_ids IS 'The SHA-256 of the token with each id.';

-- tokenused/: When each token was last used.
CREATE TABLE token_uses (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    token_sha256 text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    CHECK (store_key LIKE 'tokenused/%')
);
COMMENT ON TABLE token_uses IS 'When each token was last used.';
CREATE VIEW token_uses_records AS SELECT token_sha256, paraph_json(value) AS record FROM token_uses;

-- circuit/: Every version of every circuit.
CREATE TABLE circuits (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    name text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    version bigint GENERATED ALWAYS AS ((split_part(store_key, '/', 4))::bigint) STORED,
    CHECK (store_key LIKE 'circuit/%')
);
COMMENT ON TABLE circuits IS 'Every version of every circuit.';
CREATE VIEW circuits_records AS SELECT tenant, name, version, paraph_json(value) AS record FROM circuits;

-- circuitlatest/: The latest version number of each circuit.
CREATE TABLE circuit_latest (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    name text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    CHECK (store_key LIKE 'circuitlatest/%')
);
COMMENT ON TABLE circuit_latest IS 'The latest version number of each circuit.';
CREATE VIEW circuit_latest_records AS SELECT tenant, name, paraph_json(value) AS record FROM circuit_latest;

-- doc/: Documents: state, circuit, steps, revisions.
CREATE TABLE documents (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    doc_id text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    CHECK (store_key LIKE 'doc/%')
);
COMMENT ON TABLE documents IS 'Documents: state, circuit, steps, revisions.';
CREATE VIEW documents_records AS SELECT tenant, doc_id, paraph_json(value) AS record FROM documents;

-- blob/: Document contents by SHA-256 (each revision kept once).
CREATE TABLE contents (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    sha256 text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    CHECK (store_key LIKE 'blob/%')
);
-- Uncompressed, out of line: a download reads its pieces without decompressing from the start.
ALTER TABLE contents ALTER COLUMN value SET STORAGE EXTERNAL;
COMMENT ON TABLE contents IS 'Document contents by SHA-256 (each revision kept once).';

-- inbox/: The documents waiting for each user, oldest first (the inbox's index).
CREATE TABLE inbox (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    user_id text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    since timestamptz GENERATED ALWAYS AS (to_timestamp((split_part(store_key, '/', 4))::double precision)) STORED,
    doc_id text GENERATED ALWAYS AS (split_part(store_key, '/', 5)) STORED,
    CHECK (store_key LIKE 'inbox/%')
);
COMMENT ON TABLE inbox IS 'The documents waiting for each user, oldest first (the inbox''s index).';

-- submitted/: The documents each user submitted, in order.
CREATE TABLE submissions (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    user_id text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    created timestamptz GENERATED ALWAYS AS (to_timestamp((split_part(store_key, '/', 4))::double precision)) STORED,
    doc_id text GENERATED ALWAYS AS (split_part(store_key, '/', 5)) STORED,
    CHECK (store_key LIKE 'submitted/%')
);
COMMENT ON TABLE submissions IS 'The documents each user submitted, in order.';

-- evs/: The tenant's audit log: canonical event bytes of consecutive leaves from first_leaf on.
CREATE TABLE audit_event_runs (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    first_leaf bigint GENERATED ALWAYS AS ((split_part(store_key, '/', 3))::bigint) STORED,
    CHECK (store_key LIKE 'evs/%')
);
COMMENT ON TABLE audit_event_runs IS 'The tenant''s audit log: canonical event bytes of consecutive leaves from first_leaf on.';

-- ev/: Audit events written one per row by older versions (read only).
CREATE TABLE audit_events_v1 (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    leaf bigint GENERATED ALWAYS AS ((split_part(store_key, '/', 3))::bigint) STORED,
    CHECK (store_key LIKE 'ev/%')
);
COMMENT ON TABLE audit_events_v1 IS 'Audit events written one per row by older versions (read only).';

-- mt/: Hashes of perfect subtrees of each tenant's audit Merkle tree (levels 4, 8, 12...).
CREATE TABLE audit_tree_nodes (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    level bigint GENERATED ALWAYS AS ((split_part(store_key, '/', 3))::bigint) STORED,
    node bigint GENERATED ALWAYS AS ((split_part(store_key, '/', 4))::bigint) STORED,
    CHECK (store_key LIKE 'mt/%')
);
COMMENT ON TABLE audit_tree_nodes IS 'Hashes of perfect subtrees of each tenant''s audit Merkle tree (levels 4, 8, 12...).';

-- mthead/: The head of each tenant's audit log: size, root, right edge.
CREATE TABLE audit_heads (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    CHECK (store_key LIKE 'mthead/%')
);
COMMENT ON TABLE audit_heads IS 'The head of each tenant''s audit log: size, root, right edge.';

-- evdoc/: Each document's audit event indexes.
CREATE TABLE audit_document_events (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    doc_id text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    CHECK (store_key LIKE 'evdoc/%')
);
COMMENT ON TABLE audit_document_events IS 'Each document''s audit event indexes.';

-- ckpt/: The latest signed checkpoint of each tenant's audit log.
CREATE TABLE audit_checkpoints (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    CHECK (store_key LIKE 'ckpt/%')
);
COMMENT ON TABLE audit_checkpoints IS 'The latest signed checkpoint of each tenant''s audit log.';

-- sig/: The signatures of each document, numbered from 0.
CREATE TABLE signatures (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    doc_id text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    number bigint GENERATED ALWAYS AS ((split_part(store_key, '/', 4))::bigint) STORED,
    CHECK (store_key LIKE 'sig/%')
);
COMMENT ON TABLE signatures IS 'The signatures of each document, numbered from 0.';
CREATE VIEW signatures_records AS SELECT tenant, doc_id, number, paraph_json(value) AS record FROM signatures;

-- sighash/: SHA-256 of each signature, written by older versions (read only).
CREATE TABLE signature_hashes_v1 (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    doc_id text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    number bigint GENERATED ALWAYS AS ((split_part(store_key, '/', 4))::bigint) STORED,
    CHECK (store_key LIKE 'sighash/%')
);
COMMENT ON TABLE signature_hashes_v1 IS 'SHA-256 of each signature, written by older versions (read only).';

-- sigcount/: Signature counts written by older versions (no longer read).
CREATE TABLE signature_counts_v1 (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    doc_id text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    CHECK (store_key LIKE 'sigcount/%')
);
COMMENT ON TABLE signature_counts_v1 IS 'Signature counts written by older versions (no longer read).';

-- der/: DER certificates and CRLs signature records refer to, kept once.
CREATE TABLE certificates_and_crls (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    sha256 text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    CHECK (store_key LIKE 'der/%')
);
COMMENT ON TABLE certificates_and_crls IS 'DER certificates and CRLs signature records refer to, kept once.';

-- prep/: Signature preparations (emptied once used).
CREATE TABLE preparations (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    prep_id text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    CHECK (store_key LIKE 'prep/%')
);
COMMENT ON TABLE preparations IS 'Signature preparations (emptied once used).';
CREATE VIEW preparations_records AS SELECT tenant, prep_id, paraph_json(value) AS record FROM preparations;

-- prepused/: Used preparations, written by older versions (read only).
CREATE TABLE preparations_used_v1 (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    prep_id text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    CHECK (store_key LIKE 'prepused/%')
);
COMMENT ON TABLE preparations_used_v1 IS 'Used preparations, written by older versions (read only).';

-- trust/: Each tenant's trust anchors, CRLs and policy table.
CREATE TABLE trust_settings (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    CHECK (store_key LIKE 'trust/%')
);
COMMENT ON TABLE trust_settings IS 'Each tenant''s trust anchors, CRLs and policy table.';
CREATE VIEW trust_settings_records AS SELECT tenant, paraph_json(value) AS record FROM trust_settings;

-- certbind/: Which user each signing certificate is bound to.
CREATE TABLE certificate_bindings (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    sha256 text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    CHECK (store_key LIKE 'certbind/%')
);
COMMENT ON TABLE certificate_bindings IS 'Which user each signing certificate is bound to.';
CREATE VIEW certificate_bindings_records AS SELECT tenant, sha256, paraph_json(value) AS record FROM certificate_bindings;

-- absences/: Absences in one record per tenant, written by older versions (read only).
CREATE TABLE absences_v1 (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    CHECK (store_key LIKE 'absences/%')
);
COMMENT ON TABLE absences_v1 IS 'Absences in one record per tenant, written by older versions (read only).';
CREATE VIEW absences_v1_records AS SELECT tenant, paraph_json(value) AS record FROM absences_v1;

-- absence/: Declared absences and their delegates.
CREATE TABLE absences (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    absence_id text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    CHECK (store_key LIKE 'absence/%')
);
COMMENT ON TABLE absences IS 'Declared absences and their delegates.';
CREATE VIEW absences_records AS SELECT tenant, absence_id, paraph_json(value) AS record FROM absences;

-- abslive/: Absences not cancelled, by end (the scheduler's index).
CREATE TABLE absences_live (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    ends_at timestamptz GENERATED ALWAYS AS (to_timestamp((split_part(store_key, '/', 3))::double precision)) STORED,
    absence_id text GENERATED ALWAYS AS (split_part(store_key, '/', 4)) STORED,
    CHECK (store_key LIKE 'abslive/%')
);
COMMENT ON TABLE absences_live IS 'Absences not cancelled, by end (the scheduler''s index).';

-- absuser/: The same, per absent user.
CREATE TABLE absences_by_user (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    user_id text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    ends_at timestamptz GENERATED ALWAYS AS (to_timestamp((split_part(store_key, '/', 4))::double precision)) STORED,
    absence_id text GENERATED ALWAYS AS (split_part(store_key, '/', 5)) STORED,
    CHECK (store_key LIKE 'absuser/%')
);
COMMENT ON TABLE absences_by_user IS 'The same, per absent user.';

-- abscancel/: Cancelled absences, by when.
CREATE TABLE absences_cancelled (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    cancelled_at timestamptz GENERATED ALWAYS AS (to_timestamp((split_part(store_key, '/', 3))::double precision)) STORED,
    absence_id text GENERATED ALWAYS AS (split_part(store_key, '/', 4)) STORED,
    CHECK (store_key LIKE 'abscancel/%')
);
COMMENT ON TABLE absences_cancelled IS 'Cancelled absences, by when.';

-- due/: Deadlines of active steps (the scheduler's index).
CREATE TABLE deadlines (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    due_at timestamptz GENERATED ALWAYS AS (to_timestamp((split_part(store_key, '/', 3))::double precision)) STORED,
    doc_id text GENERATED ALWAYS AS (split_part(store_key, '/', 4)) STORED,
    CHECK (store_key LIKE 'due/%')
);
COMMENT ON TABLE deadlines IS 'Deadlines of active steps (the scheduler''s index).';

-- idem/: The first answer of each idempotent call, by caller, method and key.
CREATE TABLE idempotency (
    store_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    tenant text GENERATED ALWAYS AS (split_part(store_key, '/', 2)) STORED,
    caller text GENERATED ALWAYS AS (split_part(store_key, '/', 3)) STORED,
    method text GENERATED ALWAYS AS (split_part(store_key, '/', 4)) STORED,
    idem_key text GENERATED ALWAYS AS (substring(store_key from '^[^/]*/[^/]*/[^/]*/[^/]*/(.*)$')) STORED,
    CHECK (store_key LIKE 'idem/%')
);
COMMENT ON TABLE idempotency IS 'The first answer of each idempotent call, by caller, method and key.';

-- Keys the foreign keys refer to.
ALTER TABLE tenants ADD UNIQUE (tenant);
ALTER TABLE documents ADD UNIQUE (tenant, doc_id);
-- Checked at commit: the records of one change are written in no particular order.
ALTER TABLE users ADD FOREIGN KEY (tenant) REFERENCES tenants (tenant) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE circuits ADD FOREIGN KEY (tenant) REFERENCES tenants (tenant) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE documents ADD FOREIGN KEY (tenant) REFERENCES tenants (tenant) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE absences ADD FOREIGN KEY (tenant) REFERENCES tenants (tenant) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE inbox ADD FOREIGN KEY (tenant, doc_id) REFERENCES documents (tenant, doc_id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE submissions ADD FOREIGN KEY (tenant, doc_id) REFERENCES documents (tenant, doc_id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE deadlines ADD FOREIGN KEY (tenant, doc_id) REFERENCES documents (tenant, doc_id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE signatures ADD FOREIGN KEY (tenant, doc_id) REFERENCES documents (tenant, doc_id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE audit_document_events ADD FOREIGN KEY (tenant, doc_id) REFERENCES documents (tenant, doc_id) DEFERRABLE INITIALLY DEFERRED;

-- Indexes beyond the primary keys (which already serve the inbox, deadline and absence scans
-- of one tenant in order): across tenants, for operators.
CREATE INDEX deadlines_due_at ON deadlines (due_at);
CREATE INDEX inbox_user ON inbox (tenant, user_id, since);
CREATE INDEX absences_live_ends_at ON absences_live (ends_at);
