-- Keys a source declares but cannot apply because another source owns them.
-- The owning source reads them, so a conflict is reported on both sides and
-- applied from neither until one of them stops declaring the key.
CREATE TABLE claims (
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    app TEXT NOT NULL,
    object_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    declared_in TEXT,
    PRIMARY KEY (source, kind, app, object_id)
);
