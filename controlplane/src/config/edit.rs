//! Changing the configuration file the way an operator would: one `[[scope]]` or `[[failover]]`
//! table at a time, keeping every comment, blank line and the layout of the rest of the file.
//!
//! [`ConfigDoc`] holds the file as a `toml_edit` document. A table is replaced where it stands
//! (the comment lines above its header stay), added after the last table of its kind, or removed.
//! [`ConfigDoc::check`] validates the whole resulting text with [`crate::config::parse`], and
//! [`ConfigDoc::save`] replaces the file atomically: a temporary file in the same directory with
//! the old file's mode and owner, written and synced, renamed over the old one, then the
//! directory synced. The admin API edits through this (see `admin/scopes.rs`).
//!
//! `toml_edit` prints the tables of a document in the order of their recorded positions. After
//! every insertion the positions are renumbered in printing order, so a new table and its
//! sub-tables (`[scope.options]`, `[[scope.reservation]]`, ...) land as one block where they
//! belong.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use toml_edit::{ArrayOfTables, DocumentMut, Item, Key, Table, Value};

use crate::config::{Config, ConfigErrors, MAX_FILE_SIZE};

/// The key of the `[[scope]]` tables.
const SCOPE: &str = "scope";
/// The key of the `[[failover]]` tables.
const FAILOVER: &str = "failover";

/// Why an edit could not be made. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// Reading or writing a file failed.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("read", "replace", ...).
        action: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file cannot be edited as it stands: too large, not UTF-8, not TOML, or
    /// its tables not written as `[[scope]]`/`[[failover]]` tables.
    #[error("{origin}: {message}")]
    File {
        /// The file's name.
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// The table text given to a `put_*` method cannot be used: not TOML, or not exactly one
    /// `[[scope]]` (`[[failover]]`) table with a `name` string and nothing else.
    #[error("{0}")]
    Text(String),
    /// The table text names another table than the one being written.
    #[error("the [[{kind}]] table is named {found:?}, but {expected:?} is being written")]
    NameMismatch {
        /// `scope` or `failover`.
        kind: &'static str,
        /// The name the caller writes.
        expected: String,
        /// The name in the text.
        found: String,
    },
    /// No table of that kind has that name.
    #[error("{origin}: no [[{kind}]] named {name:?}")]
    NotFound {
        /// `scope` or `failover`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The file's name.
        origin: String,
    },
    /// [`ConfigDoc::save`] on a document made with [`ConfigDoc::parse`].
    #[error("{origin}: parsed from text, not loaded from a file; there is no file to save to")]
    NoFile {
        /// The document's origin.
        origin: String,
    },
    /// The file changed on disk after it was read (someone else edited it).
    #[error(
        "{}: changed on disk since it was read; nothing was written (read it again and redo the change)",
        path.display()
    )]
    Changed {
        /// The file.
        path: PathBuf,
    },
}

/// What a `put_*` method did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Put {
    /// The table's `name`.
    pub name: String,
    /// True if the table was added, false if it replaced one of the same name.
    pub created: bool,
}

/// The configuration file as an editable TOML document. See the module docs.
#[derive(Clone, Debug)]
pub struct ConfigDoc {
    /// The file it was loaded from (`None` for [`ConfigDoc::parse`]).
    path: Option<PathBuf>,
    /// The name used in messages (the path, for a loaded file).
    origin: String,
    /// The text as loaded: [`ConfigDoc::save`] refuses to overwrite a file that no longer holds it.
    loaded: String,
    /// The document being edited.
    doc: DocumentMut,
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> EditError {
    let path = path.to_path_buf();
    move |source| EditError::Io {
        path,
        action,
        source,
    }
}

/// The text of the file at `path` (at most [`MAX_FILE_SIZE`] bytes of UTF-8).
fn read_text(path: &Path, origin: &str) -> Result<String, EditError> {
    let meta = fs::metadata(path).map_err(io_error(path, "read"))?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(EditError::File {
            origin: origin.to_string(),
            message: format!(
                "file is {} bytes, larger than the {MAX_FILE_SIZE}-byte limit",
                meta.len()
            ),
        });
    }
    let bytes = fs::read(path).map_err(io_error(path, "read"))?;
    String::from_utf8(bytes).map_err(|e| EditError::File {
        origin: origin.to_string(),
        message: format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    })
}

/// Distinguishes the temporary files of concurrent saves within this process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Replace the file `target` with `bytes` atomically, keeping its mode and owner: a temporary
/// file in the same directory, written and synced, renamed over `target`, then the directory
/// synced. On error the temporary file is removed and `target` is untouched.
fn replace_file(target: &Path, bytes: &[u8]) -> Result<(), EditError> {
    let meta = fs::metadata(target).map_err(io_error(target, "read the metadata of"))?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let (tmp, mut file) = loop {
        let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{base}.tandem-edit.{}.{n}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1_000_000 => continue,
            Err(e) => return Err(io_error(&tmp, "create")(e)),
        }
    };
    let written = (|| -> Result<(), EditError> {
        let mine = file
            .metadata()
            .map_err(io_error(&tmp, "read the metadata of"))?;
        if (mine.uid(), mine.gid()) != (meta.uid(), meta.gid()) {
            std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))
                .map_err(io_error(&tmp, "give the old file's owner and group to"))?;
        }
        file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_error(&tmp, "give the old file's mode to"))?;
        file.write_all(bytes).map_err(io_error(&tmp, "write"))?;
        file.sync_all().map_err(io_error(&tmp, "sync"))?;
        fs::rename(&tmp, target).map_err(io_error(target, "replace"))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The new file is in place; a directory that cannot be synced only leaves the rename's
    // durability to the file system's next flush.
    if let Err(e) = fs::File::open(&dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot sync the configuration directory");
    }
    Ok(())
}

/// One step of a path from the root to a table: a key, and the element for an array of tables.
type Step = (String, Option<usize>);

/// Every table under `root` (itself first, as the empty path), in the order `toml_edit` prints
/// them: by recorded position, a table without one taking the last position seen before it in
/// document order. Dotted-key tables are printed inside their parent and are left out.
fn print_order(root: &Table) -> Vec<Vec<Step>> {
    fn visit(t: &Table, path: &mut Vec<Step>, last: &mut isize, out: &mut Vec<(isize, Vec<Step>)>) {
        if !t.is_dotted() {
            if let Some(p) = t.position() {
                *last = p;
            }
            out.push((*last, path.clone()));
        }
        for (k, item) in t.iter() {
            match item {
                Item::Table(c) => {
                    path.push((k.to_string(), None));
                    visit(c, path, last, out);
                    path.pop();
                }
                Item::ArrayOfTables(a) => {
                    for (i, c) in a.iter().enumerate() {
                        path.push((k.to_string(), Some(i)));
                        visit(c, path, last, out);
                        path.pop();
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    visit(root, &mut Vec::new(), &mut 0, &mut out);
    out.sort_by_key(|(pos, path)| (!path.is_empty(), *pos));
    out.into_iter().map(|(_, p)| p).collect()
}

/// The table at `path` under `t`.
fn table_at_mut<'a>(mut t: &'a mut Table, path: &[Step]) -> Option<&'a mut Table> {
    for (k, i) in path {
        let item = t.get_mut(k)?;
        t = match i {
            None => item.as_table_mut()?,
            Some(i) => item.as_array_of_tables_mut()?.get_mut(*i)?,
        };
    }
    Some(t)
}

/// Give every table under `root` (itself included) the position `base + k * stride`, `k`
/// counting in printing order: the printed order stays, and with `stride > 1` there is room
/// for `stride - 1` tables after each.
fn renumber(root: &mut Table, base: isize, stride: isize) {
    for (k, path) in print_order(root).into_iter().enumerate() {
        if let Some(t) = table_at_mut(root, &path) {
            t.set_position(Some(base + k as isize * stride));
        }
    }
}

/// True if the comment lines above the header of `t` hold a comment.
fn has_comment(t: &Table) -> bool {
    t.decor()
        .prefix()
        .and_then(|p| p.as_str())
        .is_some_and(|s| s.lines().any(|l| l.trim_start().starts_with('#')))
}

/// The `name` string of a table.
fn name_of(t: &Table) -> Option<&str> {
    t.get("name").and_then(Item::as_str)
}

/// Insert `key = item` into `t` right after the key `after` (first if `None`), or last if `t`
/// has no key `after`.
fn insert_after(t: &mut Table, after: Option<&str>, key: Key, item: Item) {
    let at = match after {
        None => Some(0),
        Some(a) => t.iter().position(|(k, _)| k == a).map(|i| i + 1),
    };
    let Some(at) = at else {
        t.insert_formatted(&key, item);
        return;
    };
    let keys: Vec<String> = t.iter().map(|(k, _)| k.to_string()).collect();
    let mut entries: Vec<(Key, Item)> = keys.iter().filter_map(|k| t.remove_entry(k)).collect();
    entries.insert(at.min(entries.len()), (key, item));
    for (k, v) in entries {
        t.insert_formatted(&k, v);
    }
}

/// The one `[[kind]]` table of the table text `text`, with its sub-tables.
fn single_table(text: &str, kind: &'static str) -> Result<Table, EditError> {
    let doc: DocumentMut = text
        .parse()
        .map_err(|e| EditError::Text(format!("the [[{kind}]] text is not valid TOML: {e}")))?;
    let mut root = doc.into_table();
    if let Some((other, _)) = root.iter().find(|(k, _)| *k != kind) {
        return Err(EditError::Text(format!(
            "the text holds `{other}` besides the [[{kind}]] table; send one [[{kind}]] table \
             (with its sub-tables) and nothing else"
        )));
    }
    let Some(item) = root.remove(kind) else {
        return Err(EditError::Text(format!(
            "the text holds no [[{kind}]] table"
        )));
    };
    let tables = item.into_array_of_tables().map_err(|_| {
        EditError::Text(format!(
            "`{kind}` is not written as a [[{kind}]] table (with double brackets)"
        ))
    })?;
    if tables.len() != 1 {
        return Err(EditError::Text(format!(
            "the text holds {} [[{kind}]] tables; exactly one is expected",
            tables.len()
        )));
    }
    tables
        .into_iter()
        .next()
        .ok_or_else(|| EditError::Text(format!("the text holds no [[{kind}]] table")))
}

impl ConfigDoc {
    /// Read the configuration file at `path` (its path is the origin of messages).
    pub fn load(path: &Path) -> Result<ConfigDoc, EditError> {
        let origin = path.display().to_string();
        let text = read_text(path, &origin)?;
        let mut doc = ConfigDoc::parse(&text, &origin)?;
        doc.path = Some(path.to_path_buf());
        Ok(doc)
    }

    /// A document over `text`, with `origin` naming it in messages. It has no file:
    /// [`ConfigDoc::save`] fails.
    pub fn parse(text: &str, origin: &str) -> Result<ConfigDoc, EditError> {
        let doc = text.parse::<DocumentMut>().map_err(|e| EditError::File {
            origin: origin.to_string(),
            message: format!("not valid TOML, so it cannot be edited: {e}"),
        })?;
        Ok(ConfigDoc {
            path: None,
            origin: origin.to_string(),
            loaded: text.to_string(),
            doc,
        })
    }

    /// The file it was loaded from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The name used in messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The document's text now (edits included).
    pub fn text(&self) -> String {
        self.doc.to_string()
    }

    /// Validate the document's text now as a whole configuration, with [`crate::config::parse`]
    /// (positions refer to [`ConfigDoc::text`]).
    pub fn check(&self) -> Result<Config, ConfigErrors> {
        crate::config::parse(&self.text(), &self.origin)
    }

    /// Write the document's text over the file it was loaded from, atomically, keeping the
    /// file's mode and owner (a symbolic link is followed: its target is replaced). Refused if
    /// the file no longer holds the text it was loaded with.
    pub fn save(&self) -> Result<(), EditError> {
        self.write_over(&self.loaded, &self.text())
    }

    /// Undo a [`ConfigDoc::save`]: write the text the document was loaded with back over the
    /// file, provided the file still holds what `save` wrote.
    pub fn revert(&self) -> Result<(), EditError> {
        self.write_over(&self.text(), &self.loaded)
    }

    /// Replace the file's text `expected` with `text`.
    fn write_over(&self, expected: &str, text: &str) -> Result<(), EditError> {
        let Some(path) = &self.path else {
            return Err(EditError::NoFile {
                origin: self.origin.clone(),
            });
        };
        let target = fs::canonicalize(path).map_err(io_error(path, "resolve"))?;
        if read_text(&target, &self.origin)? != expected {
            return Err(EditError::Changed { path: path.clone() });
        }
        replace_file(&target, text.as_bytes())
    }

    /// The `[[kind]]` tables; `None` if there are none, an error if `kind` is not written as
    /// an array of tables.
    fn tables(&self, kind: &'static str) -> Result<Option<&ArrayOfTables>, EditError> {
        match self.doc.get(kind) {
            None => Ok(None),
            Some(item) => item
                .as_array_of_tables()
                .map(Some)
                .ok_or_else(|| EditError::File {
                    origin: self.origin.clone(),
                    message: format!(
                        "`{kind}` is not written as [[{kind}]] tables; edit it by hand"
                    ),
                }),
        }
    }

    fn tables_mut(&mut self, kind: &'static str) -> Result<&mut ArrayOfTables, EditError> {
        self.tables(kind)?;
        let item = self
            .doc
            .entry(kind)
            .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
        let origin = self.origin.clone();
        item.as_array_of_tables_mut().ok_or(EditError::File {
            origin,
            message: format!("`{kind}` is not written as [[{kind}]] tables; edit it by hand"),
        })
    }

    fn index_of(&self, kind: &'static str, name: &str) -> Option<usize> {
        self.tables(kind)
            .ok()
            .flatten()?
            .iter()
            .position(|t| name_of(t) == Some(name))
    }

    fn names(&self, kind: &'static str) -> Vec<String> {
        self.tables(kind)
            .ok()
            .flatten()
            .into_iter()
            .flat_map(|a| a.iter())
            .filter_map(|t| name_of(t).map(str::to_string))
            .collect()
    }

    /// The `[[kind]]` table named `name` as a document of its own.
    fn table_text(&self, kind: &'static str, name: &str) -> Option<String> {
        let i = self.index_of(kind, name)?;
        let mut t = self.tables(kind).ok().flatten()?.get(i)?.clone();
        // The comment lines above the header stay in the file; the text starts at the header.
        t.decor_mut().set_prefix("");
        let mut tables = ArrayOfTables::new();
        tables.push(t);
        let mut doc = DocumentMut::new();
        doc.insert(kind, Item::ArrayOfTables(tables));
        renumber(doc.as_table_mut(), 0, 1);
        Some(doc.to_string())
    }

    /// Put the one `[[kind]]` table of `text` in place of the table of the same name (keeping
    /// the old values of the `keep` keys it lacks) or after the last `[[kind]]` table.
    fn put_table(
        &mut self,
        kind: &'static str,
        text: &str,
        keep: &[&str],
        expected: Option<&str>,
    ) -> Result<Put, EditError> {
        let mut table = single_table(text, kind)?;
        let name = name_of(&table)
            .ok_or_else(|| EditError::Text(format!("the [[{kind}]] table has no `name` string")))?
            .to_string();
        if let Some(exp) = expected.filter(|e| *e != name) {
            return Err(EditError::NameMismatch {
                kind,
                expected: exp.to_string(),
                found: name,
            });
        }
        self.tables(kind)?;
        // Room for the new table and its sub-tables after any table.
        let size = print_order(&table).len() as isize;
        let stride = size + 1;
        renumber(self.doc.as_table_mut(), 0, stride);
        let existing = self.index_of(kind, &name);
        let base = match existing {
            Some(i) => {
                let old = self.tables(kind)?.and_then(|a| a.get(i)).ok_or_else(|| {
                    EditError::NotFound {
                        kind,
                        name: name.clone(),
                        origin: self.origin.clone(),
                    }
                })?;
                for &k in keep {
                    if table.contains_key(k) {
                        continue;
                    }
                    if let Some((key, item)) = old.get_key_value(k) {
                        let keys: Vec<&str> = old.iter().map(|(k, _)| k).collect();
                        let pos = keys.iter().position(|x| *x == k);
                        let after = pos.and_then(|p| p.checked_sub(1)).map(|p| keys[p]);
                        let (key, item) = (key.clone(), item.clone());
                        insert_after(&mut table, after, key, item);
                    }
                }
                if !has_comment(&table) {
                    *table.decor_mut() = toml_edit::Decor::new(
                        old.decor().prefix().cloned().unwrap_or_default(),
                        table.decor().suffix().cloned().unwrap_or_else(|| "".into()),
                    );
                }
                old.position().unwrap_or(0)
            }
            None => {
                let prefix = table
                    .decor()
                    .prefix()
                    .and_then(|p| p.as_str())
                    .unwrap_or("")
                    .to_string();
                if !prefix.starts_with('\n') {
                    table.decor_mut().set_prefix(format!("\n{prefix}"));
                }
                let order = print_order(self.doc.as_table());
                let last_of_kind = order
                    .iter()
                    .rposition(|p| p.first().is_some_and(|(k, _)| k == kind));
                let first_failover = order
                    .iter()
                    .position(|p| p.first().is_some_and(|(k, _)| k == FAILOVER));
                match (last_of_kind, first_failover) {
                    // After the last table of the kind and its sub-tables.
                    (Some(k), _) => k as isize * stride + 1,
                    // The first scope goes before the failover relationships naming scopes.
                    (None, Some(f)) if kind == SCOPE && f > 0 => (f as isize - 1) * stride + 1,
                    _ => order.len() as isize * stride,
                }
            }
        };
        renumber(&mut table, base, 1);
        let tables = self.tables_mut(kind)?;
        match existing {
            Some(i) => {
                tables.replace(i, table);
            }
            None => tables.push(table),
        }
        renumber(self.doc.as_table_mut(), 0, 1);
        Ok(Put {
            name,
            created: existing.is_none(),
        })
    }

    fn remove_table(&mut self, kind: &'static str, name: &str) -> Result<(), EditError> {
        let Some(i) = self.index_of(kind, name) else {
            self.tables(kind)?;
            return Err(EditError::NotFound {
                kind,
                name: name.to_string(),
                origin: self.origin.clone(),
            });
        };
        let tables = self.tables_mut(kind)?;
        tables.remove(i);
        if tables.is_empty() {
            self.doc.remove(kind);
        }
        Ok(())
    }

    /// The names of the `[[scope]]` tables, in file order.
    pub fn scope_names(&self) -> Vec<String> {
        self.names(SCOPE)
    }

    /// The `[[scope]]` table named `name` with its sub-tables, as a TOML text of its own
    /// starting at its `[[scope]]` header (what [`ConfigDoc::put_scope`] takes back).
    pub fn scope_text(&self, name: &str) -> Option<String> {
        self.table_text(SCOPE, name)
    }

    /// Put the one `[[scope]]` table of `scope_text` (with its sub-tables, and nothing else) in
    /// the document: in place of the scope of the same name, keeping the old values of the
    /// `keep` keys the new table lacks (and the comment lines above the old header, unless the
    /// text brings its own), or else after the last `[[scope]]`.
    pub fn put_scope(&mut self, scope_text: &str, keep: &[&str]) -> Result<Put, EditError> {
        self.put_table(SCOPE, scope_text, keep, None)
    }

    /// [`ConfigDoc::put_scope`], refusing a text whose scope is not named `name`.
    pub fn put_scope_as(
        &mut self,
        name: &str,
        scope_text: &str,
        keep: &[&str],
    ) -> Result<Put, EditError> {
        self.put_table(SCOPE, scope_text, keep, Some(name))
    }

    /// Remove the `[[scope]]` named `name` with its sub-tables.
    pub fn remove_scope(&mut self, name: &str) -> Result<(), EditError> {
        self.remove_table(SCOPE, name)
    }

    /// The names of the `[[failover]]` tables whose `scopes` list `scope` (a table without a
    /// name is shown by its position, `#0`, `#1`, ...).
    pub fn failovers_with_scope(&self, scope: &str) -> Vec<String> {
        self.tables(FAILOVER)
            .ok()
            .flatten()
            .into_iter()
            .flat_map(|a| a.iter().enumerate())
            .filter(|(_, t)| {
                t.get("scopes")
                    .and_then(Item::as_array)
                    .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(scope)))
            })
            .map(|(i, t)| name_of(t).map_or_else(|| format!("#{i}"), str::to_string))
            .collect()
    }

    /// The names of the `[[failover]]` tables, in file order.
    pub fn failover_names(&self) -> Vec<String> {
        self.names(FAILOVER)
    }

    /// The `[[failover]]` table named `name`, as a TOML text of its own.
    pub fn failover_text(&self, name: &str) -> Option<String> {
        self.table_text(FAILOVER, name)
    }

    /// Put the one `[[failover]]` table of `failover_text` in the document, as
    /// [`ConfigDoc::put_scope`] does (no keys are kept from the table it replaces).
    pub fn put_failover(&mut self, failover_text: &str) -> Result<Put, EditError> {
        self.put_table(FAILOVER, failover_text, &[], None)
    }

    /// Remove the `[[failover]]` named `name`.
    pub fn remove_failover(&mut self, name: &str) -> Result<(), EditError> {
        self.remove_table(FAILOVER, name)
    }

    /// Set `key` of the `[[failover]]` named `name` to `value` (`None` removes the key). A value
    /// replaced in place keeps its position, the comment lines above it and its end-of-line
    /// comment; a new key goes after the table's other keys.
    pub fn set_failover_key(
        &mut self,
        name: &str,
        key: &str,
        value: Option<Value>,
    ) -> Result<(), EditError> {
        let Some(i) = self.index_of(FAILOVER, name) else {
            self.tables(FAILOVER)?;
            return Err(EditError::NotFound {
                kind: FAILOVER,
                name: name.to_string(),
                origin: self.origin.clone(),
            });
        };
        let origin = self.origin.clone();
        let t = self
            .tables_mut(FAILOVER)?
            .get_mut(i)
            .ok_or_else(|| EditError::NotFound {
                kind: FAILOVER,
                name: name.to_string(),
                origin,
            })?;
        match (value, t.get_mut(key)) {
            (None, _) => {
                t.remove(key);
            }
            (Some(mut v), Some(old)) => {
                if let Some(o) = old.as_value() {
                    *v.decor_mut() = o.decor().clone();
                }
                *old = Item::Value(v);
            }
            (Some(v), None) => {
                t.insert(key, Item::Value(v));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# Tandem test configuration
[server]
server_id = "10.0.0.1"
interfaces = ["eth0", "eth1"]

# The office LAN.
[[scope]]
name = "lan"      # the main one
subnet = "10.0.0.0/24"
interface = "eth0"
ranges = ["10.0.0.100-10.0.0.200"]

[scope.options]
routers = ["10.0.0.1"]

# Voice VLAN, relayed.
[[scope]]
name = "voice"
subnet = "10.0.5.0/24"
ranges = ["10.0.5.20-10.0.5.119"]
lease_time = "12h"

[[scope.reservation]]
mac = "52:54:00:12:34:56"
address = "10.0.5.10"

# Lab.
[[scope]]
name = "lab"
subnet = "10.0.9.0/24"
interface = "eth1"
ranges = ["10.0.9.10-10.0.9.20"]

# The pair.
[[failover]]
name = "pair"
role = "primary"
partner = "10.0.0.2"
shared_secret = "s3cret-s3cret"
mclt = "1h"   # the default
scopes = ["voice"]
"#;

    fn doc() -> ConfigDoc {
        ConfigDoc::parse(FILE, "tandem.toml").expect("parses")
    }

    fn config(d: &ConfigDoc) -> Config {
        d.check()
            .unwrap_or_else(|e| panic!("invalid:\n{e}\n---\n{}", d.text()))
    }

    #[test]
    fn the_test_file_is_valid_and_round_trips_unchanged() {
        let d = doc();
        assert_eq!(d.text(), FILE);
        config(&d);
        assert_eq!(d.scope_names(), ["lan", "voice", "lab"]);
        assert_eq!(d.failover_names(), ["pair"]);
    }

    #[test]
    fn comments_survive_an_edit() {
        let mut d = doc();
        let p = d
            .put_scope(
                "[[scope]]\nname = \"lab\"\nsubnet = \"10.0.9.0/24\"\nranges = [\"10.0.9.30-10.0.9.40\"]\n",
                &["interface"],
            )
            .expect("replaced");
        assert_eq!(
            p,
            Put {
                name: "lab".into(),
                created: false
            }
        );
        let text = d.text();
        for c in [
            "# Tandem test configuration\n",
            "# The office LAN.\n",
            "name = \"lan\"      # the main one\n",
            "# Voice VLAN, relayed.\n",
            "# Lab.\n[[scope]]\nname = \"lab\"",
            "# The pair.\n",
            "mclt = \"1h\"   # the default\n",
        ] {
            assert!(text.contains(c), "lost {c:?}:\n{text}");
        }
        assert!(text.contains("10.0.9.30-10.0.9.40"));
        assert!(!text.contains("10.0.9.10-10.0.9.20"));
        config(&d);
    }

    #[test]
    fn a_replaced_scope_keeps_its_position_and_interface() {
        let mut d = doc();
        let new = "[[scope]]\nname = \"lan\"\nsubnet = \"10.0.0.0/24\"\n\
                   ranges = [\"10.0.0.100-10.0.0.150\"]\nlease_time = \"2h\"\n\n\
                   [scope.options]\nrouters = [\"10.0.0.254\"]\ndomain_name = \"corp.example\"\n";
        let p = d.put_scope(new, &["interface"]).expect("replaced");
        assert!(!p.created);
        assert_eq!(d.scope_names(), ["lan", "voice", "lab"], "same place");
        let text = d.text();
        // The kept key sits where it was: after `subnet`.
        assert!(
            text.contains(
                "# The office LAN.\n[[scope]]\nname = \"lan\"\nsubnet = \"10.0.0.0/24\"\ninterface = \"eth0\"\n\
                 ranges = [\"10.0.0.100-10.0.0.150\"]\nlease_time = \"2h\"\n\n[scope.options]\n\
                 routers = [\"10.0.0.254\"]\ndomain_name = \"corp.example\"\n\n# Voice VLAN"
            ),
            "{text}"
        );
        let c = config(&d);
        assert_eq!(c.settings.scopes[0].name, "lan");
        assert_eq!(c.settings.scopes[0].lease_time, 7200);
        assert_eq!(c.scope_interfaces[0].as_deref(), Some("eth0"));
        // The other scopes are untouched.
        let before = config(&doc());
        assert_eq!(c.settings.scopes[1..], before.settings.scopes[1..]);

        // A text that names its own interface wins; without `keep` it is dropped.
        d.put_scope(
            "[[scope]]\nname = \"lab\"\nsubnet = \"10.0.9.0/24\"\nranges = [\"10.0.9.10-10.0.9.20\"]\n",
            &[],
        )
        .expect("replaced");
        assert_eq!(config(&d).scope_interfaces[2], None);
        d.put_scope(
            "[[scope]]\nname = \"lab\"\nsubnet = \"10.0.9.0/24\"\ninterface = \"eth0\"\n\
             ranges = [\"10.0.9.10-10.0.9.20\"]\n",
            &["interface"],
        )
        .expect("replaced");
        assert_eq!(config(&d).scope_interfaces[2].as_deref(), Some("eth0"));
    }

    #[test]
    fn an_added_scope_goes_after_the_last_scope_and_parses_back() {
        let mut d = doc();
        let p = d
            .put_scope(
                "# Guests.\n[[scope]]\nname = \"guest\"\nsubnet = \"10.0.7.0/24\"\n\
                 ranges = [\"10.0.7.10-10.0.7.99\"]\n\n[scope.options]\nrouters = [\"10.0.7.1\"]\n\n\
                 [[scope.policy]]\nname = \"phones\"\nconditions = [{ vendor_class = \"Cisco*\" }]\n\
                 ranges = [\"10.0.7.10-10.0.7.20\"]\n",
                &["interface"],
            )
            .expect("added");
        assert_eq!(
            p,
            Put {
                name: "guest".into(),
                created: true
            }
        );
        assert_eq!(d.scope_names(), ["lan", "voice", "lab", "guest"]);
        let text = d.text();
        let guest = text.find("# Guests.").expect("added with its comment");
        let lab = text.find("name = \"lab\"").expect("lab");
        let pair = text.find("# The pair.").expect("failover");
        assert!(lab < guest && guest < pair, "{text}");
        let c = config(&d);
        let g = &c.settings.scopes[3];
        assert_eq!(g.name, "guest");
        assert_eq!(g.options.get(3), Some(&[10, 0, 7, 1][..]));
        assert_eq!(g.policies.len(), 1);
        assert_eq!(c.scope_interfaces[3], None);
        assert_eq!(
            c.failover[0].scope_names,
            ["voice"],
            "the relationship is untouched"
        );
    }

    #[test]
    fn the_first_scope_goes_before_the_failover_tables() {
        let mut d = ConfigDoc::parse(
            "[server]\nserver_id = \"10.0.0.1\"\n\n[[failover]]\nname = \"p\"\n",
            "t.toml",
        )
        .expect("parses");
        d.put_scope("[[scope]]\nname = \"a\"\nsubnet = \"10.1.0.0/24\"\n", &[])
            .expect("added");
        assert_eq!(
            d.text(),
            "[server]\nserver_id = \"10.0.0.1\"\n\n[[scope]]\nname = \"a\"\nsubnet = \"10.1.0.0/24\"\n\n\
             [[failover]]\nname = \"p\"\n"
        );
    }

    #[test]
    fn removing_one_of_three_scopes() {
        let mut d = doc();
        d.remove_scope("voice").expect("removed");
        assert_eq!(d.scope_names(), ["lan", "lab"]);
        let text = d.text();
        assert!(!text.contains("name = \"voice\""), "{text}");
        assert!(!text.contains("Voice VLAN"), "its comment goes with it");
        assert!(!text.contains("52:54:00:12:34:56"), "its reservation too");
        assert!(text.contains("# Lab.\n[[scope]]\nname = \"lab\""));
        // The relationship still names it: the whole file is now invalid, and says why.
        let errs = d
            .check()
            .expect_err("a relationship names the removed scope");
        assert!(errs.to_string().contains("voice"), "{errs}");
        d.set_failover_key(
            "pair",
            "scopes",
            Some(Value::Array(toml_edit::Array::from_iter(["lab"]))),
        )
        .expect("set");
        let c = config(&d);
        assert_eq!(c.settings.scopes.len(), 2);
        assert_eq!(c.failover[0].scope_names, ["lab"]);
        assert_eq!(d.failovers_with_scope("lab"), ["pair"]);
        assert!(d.failovers_with_scope("lan").is_empty());
    }

    #[test]
    fn a_failover_table_round_trips_and_its_keys_are_set() {
        let mut d = doc();
        let text = d.failover_text("pair").expect("exists");
        assert!(
            text.starts_with("[[failover]]\nname = \"pair\"\n"),
            "{text}"
        );
        assert!(!text.contains("# The pair."));
        let before = d.text();
        let p = d.put_failover(&text).expect("put back");
        assert!(!p.created);
        assert_eq!(
            d.text(),
            before,
            "an unchanged table leaves the file as it was"
        );

        d.set_failover_key("pair", "mclt", Some(Value::from("30m")))
            .expect("set");
        d.set_failover_key("pair", "load_balance_percent", Some(Value::from(60)))
            .expect("added");
        d.set_failover_key("pair", "shared_secret", None)
            .expect("removed");
        let text = d.text();
        assert!(text.contains("mclt = \"30m\"   # the default\n"), "{text}");
        assert!(text.ends_with("load_balance_percent = 60\n"), "{text}");
        assert!(!text.contains("shared_secret"));
        let c = config(&d);
        assert_eq!(c.failover[0].mclt_secs, 1800);

        // A second relationship is added after the first, and removed again.
        let p = d
            .put_failover(
                "[[failover]]\nname = \"other\"\nrole = \"secondary\"\npartner = \"10.0.0.3\"\n\
                 scopes = [\"lab\"]\n",
            )
            .expect("added");
        assert!(p.created);
        assert_eq!(d.failover_names(), ["pair", "other"]);
        config(&d);
        d.remove_failover("other").expect("removed");
        assert_eq!(d.failover_names(), ["pair"]);
        assert!(matches!(
            d.remove_failover("other"),
            Err(EditError::NotFound {
                kind: "failover",
                ..
            })
        ));
        assert!(matches!(
            d.set_failover_key("nope", "mclt", None),
            Err(EditError::NotFound { .. })
        ));
    }

    #[test]
    fn bad_texts_and_names_are_refused_with_precise_errors() {
        let mut d = doc();
        let before = d.text();
        let two = "[[scope]]\nname = \"a\"\n[[scope]]\nname = \"b\"\n";
        let e = d.put_scope(two, &[]).expect_err("two scopes");
        assert!(e.to_string().contains("2 [[scope]] tables"), "{e}");
        let e = d.put_scope("", &[]).expect_err("none");
        assert!(e.to_string().contains("no [[scope]]"), "{e}");
        let e = d
            .put_scope("[server]\nx = 1\n[[scope]]\nname = \"a\"\n", &[])
            .expect_err("extra table");
        assert!(e.to_string().contains("`server`"), "{e}");
        let e = d
            .put_scope("[scope]\nname = \"a\"\n", &[])
            .expect_err("single brackets");
        assert!(e.to_string().contains("double brackets"), "{e}");
        let e = d
            .put_scope("[[scope]]\nsubnet = \"10.1.0.0/24\"\n", &[])
            .expect_err("no name");
        assert!(e.to_string().contains("no `name`"), "{e}");
        let e = d.put_scope("[[scope]\nname = ", &[]).expect_err("not TOML");
        assert!(matches!(e, EditError::Text(_)), "{e:?}");
        assert!(e.to_string().contains("not valid TOML"), "{e}");
        let e = d
            .put_scope_as("lan", "[[scope]]\nname = \"lab\"\n", &[])
            .expect_err("name mismatch");
        assert!(
            matches!(&e, EditError::NameMismatch { expected, found, .. } if expected == "lan" && found == "lab"),
            "{e:?}"
        );
        let e = d.remove_scope("nope").expect_err("no such scope");
        assert_eq!(e.to_string(), "tandem.toml: no [[scope]] named \"nope\"");
        assert!(d.scope_text("nope").is_none());
        assert_eq!(d.text(), before, "nothing changed");
        let e = d.save().expect_err("no file");
        assert!(matches!(e, EditError::NoFile { .. }), "{e:?}");
        let e = ConfigDoc::parse("[server\n", "x.toml").expect_err("broken file");
        assert!(e.to_string().starts_with("x.toml: not valid TOML"), "{e}");
    }

    #[test]
    fn a_full_scope_round_trips_through_its_text() {
        let full = r#"[server]
server_id = "10.0.0.1"
interfaces = ["eth0"]

[[scope]]
name = "rich"
description = "everything"
subnet = "10.2.0.0/24"
interface = "eth0"
ranges = ["10.2.0.10-10.2.0.100", ["10.2.0.150", "10.2.0.160"]]
exclusions = ["10.2.0.50"]
lease_time = "8h"
renew_time = "2h"
rebind_time = "6h"
authoritative = false

[scope.options]
routers = ["10.2.0.1"]
dns_servers = ["10.2.0.53", "10.2.0.54"]

[[scope.option]]
code = 150
type = "ipv4-list"
value = ["10.9.9.9"]

[[scope.reservation]]
mac = "52:54:00:00:00:01"
address = "10.2.0.5"
hostname = "printer"

[scope.reservation.options]
routers = ["10.2.0.2"]

[[scope.reservation]]
client_id = "01:52:54:00:00:00:02"
address = "10.2.0.6"

[[scope.policy]]
name = "phones"
conditions = [{ vendor_class = "Cisco*" }]
ranges = ["10.2.0.10-10.2.0.30"]
lease_time = "12h"

[scope.policy.options]
domain_name = "voice.example"

[[scope.policy]]
name = "printers"
match = "any"
conditions = [{ mac = "52:54:00:*" }, { vendor_class = "HP*", not = true }]
ranges = ["10.2.0.31-10.2.0.40"]

[[scope]]
name = "after"
subnet = "10.3.0.0/24"
ranges = ["10.3.0.10-10.3.0.20"]
"#;
        let mut d = ConfigDoc::parse(full, "full.toml").expect("parses");
        let before = config(&d);
        let text = d.scope_text("rich").expect("exists");
        assert!(text.starts_with("[[scope]]\nname = \"rich\""), "{text}");
        for part in [
            "[scope.options]",
            "[[scope.option]]",
            "[[scope.reservation]]",
            "[scope.reservation.options]",
            "[[scope.policy]]",
            "[scope.policy.options]",
        ] {
            assert!(text.contains(part), "{part} missing:\n{text}");
        }
        assert!(!text.contains("after"), "only the one scope:\n{text}");
        // The text parses on its own, as one scope.
        let alone = ConfigDoc::parse(&text, "alone.toml").expect("standalone TOML");
        assert_eq!(alone.scope_names(), ["rich"]);

        let p = d.put_scope(&text, &["interface"]).expect("put back");
        assert!(!p.created);
        assert_eq!(config(&d), before, "the same configuration");
        assert_eq!(d.text(), full, "and the same text");

        // Moved to the end (removed, then added back), it is still the same scope.
        d.remove_scope("rich").expect("removed");
        d.put_scope(&text, &[]).expect("added");
        assert_eq!(d.scope_names(), ["after", "rich"]);
        let moved = config(&d);
        assert_eq!(moved.settings.scopes[1], before.settings.scopes[0]);
        assert_eq!(moved.scope_interfaces[1], before.scope_interfaces[0]);
    }

    #[test]
    fn save_replaces_the_file_atomically_keeping_its_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tandem.toml");
        fs::write(&path, FILE).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let mut d = ConfigDoc::load(&path).expect("loads");
        assert_eq!(d.path(), Some(path.as_path()));
        assert_eq!(d.origin(), path.display().to_string());
        d.remove_scope("lab").expect("removed");
        d.save().expect("saved");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        assert_eq!(fs::read_to_string(&path).expect("read"), d.text());
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tandem.toml"], "no temporary file is left");
        // The file no longer holds the loaded text, so a second save is refused.
        let e = d.save().expect_err("the file changed since it was loaded");
        assert!(matches!(e, EditError::Changed { .. }), "{e:?}");
        // revert puts the loaded text back.
        d.revert().expect("reverted");
        assert_eq!(fs::read_to_string(&path).expect("read"), FILE);
        assert_eq!(
            fs::metadata(&path).expect("stat").permissions().mode() & 0o7777,
            0o640
        );

        // Someone else's edit in between is not overwritten.
        let mut d = ConfigDoc::load(&path).expect("loads");
        d.remove_scope("lab").expect("removed");
        fs::write(&path, format!("{FILE}\n# hand edit\n")).expect("hand edit");
        let e = d.save().expect_err("changed on disk");
        assert!(e.to_string().contains("changed on disk"), "{e}");
        assert!(fs::read_to_string(&path)
            .expect("read")
            .ends_with("# hand edit\n"));

        // A symbolic link is followed: the link stays, its target is replaced.
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        let mut d = ConfigDoc::load(&link).expect("loads");
        d.remove_scope("lab").expect("removed");
        d.save().expect("saved");
        assert!(fs::symlink_metadata(&link)
            .expect("lstat")
            .file_type()
            .is_symlink());
        assert!(!fs::read_to_string(&path).expect("read").contains("\"lab\""));
        assert!(matches!(
            ConfigDoc::load(&dir.path().join("missing.toml")),
            Err(EditError::Io { action: "read", .. })
        ));
    }
}
