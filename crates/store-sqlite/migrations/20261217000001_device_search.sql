-- Device search (`q=`) is a case-insensitive substring of name, serial or primary user, which no
-- B-tree serves. An FTS5 trigram index of those three columns (SQLite's "trigram" tokenizer,
-- 3.34 and later; folds case by default) finds the rows holding every three-character piece of a
-- search of three or more characters; the LIKE of the query still decides, so the index only
-- narrows. External content: the text stays in `devices`, the index is keyed by the device
-- row's rowid (kept by VACUUM and VACUUM INTO, whose copy preserves rowids), and these triggers
-- keep it in step.
CREATE VIRTUAL TABLE devices_search USING fts5(
    name, serial, primary_user,
    content = 'devices', content_rowid = 'rowid', tokenize = 'trigram'
);
CREATE TRIGGER devices_search_insert AFTER INSERT ON devices BEGIN
    INSERT INTO devices_search (rowid, name, serial, primary_user)
        VALUES (new.rowid, new.name, new.serial, new.primary_user);
END;
CREATE TRIGGER devices_search_delete AFTER DELETE ON devices BEGIN
    INSERT INTO devices_search (devices_search, rowid, name, serial, primary_user)
        VALUES ('delete', old.rowid, old.name, old.serial, old.primary_user);
END;
-- Only when a searched value really changes: check-ins rewrite the device row all the time.
CREATE TRIGGER devices_search_update AFTER UPDATE OF name, serial, primary_user ON devices
WHEN old.name IS NOT new.name OR old.serial IS NOT new.serial
    OR old.primary_user IS NOT new.primary_user
BEGIN
    INSERT INTO devices_search (devices_search, rowid, name, serial, primary_user)
        VALUES ('delete', old.rowid, old.name, old.serial, old.primary_user);
    INSERT INTO devices_search (rowid, name, serial, primary_user)
        VALUES (new.rowid, new.name, new.serial, new.primary_user);
END;
INSERT INTO devices_search (devices_search) VALUES ('rebuild');
