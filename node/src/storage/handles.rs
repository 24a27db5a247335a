//! A small LRU of open file handles, so a tree of many files never
//! exhausts descriptors.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

/// A small LRU of open files, so a tree of many files never exhausts descriptors.
#[derive(Default)]
pub(super) struct HandleCache {
    map: HashMap<usize, (Arc<File>, u64)>,
    tick: u64,
}

impl HandleCache {
    pub(super) fn get(&mut self, file: usize) -> Option<Arc<File>> {
        self.tick += 1;
        let now = self.tick;
        self.map.get_mut(&file).map(|(f, used)| {
            *used = now;
            Arc::clone(f)
        })
    }

    pub(super) fn insert(&mut self, file: usize, handle: Arc<File>, cap: usize) {
        while self.map.len() >= cap.max(1) {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => self.map.remove(&k),
                None => break,
            };
        }
        self.tick += 1;
        self.map.insert(file, (handle, self.tick));
    }

    pub(super) fn clear(&mut self) {
        self.map.clear();
    }

    /// Handles open now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}
