//! Configuration snapshots from the control thread to the workers
//! (ARCHITECTURE principle 3). The control thread builds an immutable value
//! and publishes it; each worker checks one atomic generation counter per
//! loop turn and, only when it changed, takes the new `Arc` (a short read
//! lock, off the per-packet path). No worker ever sees half an update.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The published value and its generation.
#[derive(Debug)]
pub struct Published<T> {
    generation: AtomicU64,
    value: RwLock<Arc<T>>,
}

impl<T> Published<T> {
    pub fn new(value: Arc<T>) -> Self {
        Published {
            generation: AtomicU64::new(1),
            value: RwLock::new(value),
        }
    }

    /// Replace the value (control thread).
    pub fn publish(&self, value: Arc<T>) {
        let mut slot = match self.value.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *slot = value;
        // Release: a worker that sees the new generation sees the new value.
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current value.
    pub fn load(&self) -> Arc<T> {
        match self.value.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// A worker's view: its adopted value and the generation it came with.
#[derive(Debug)]
pub struct Subscriber<T> {
    source: Arc<Published<T>>,
    seen: u64,
    current: Arc<T>,
}

impl<T> Subscriber<T> {
    pub fn new(source: Arc<Published<T>>) -> Self {
        let seen = source.generation();
        let current = source.load();
        Subscriber {
            source,
            seen,
            current,
        }
    }

    /// Between bursts: the new value if one was published since last call.
    #[inline]
    pub fn poll(&mut self) -> Option<Arc<T>> {
        let g = self.source.generation();
        if g == self.seen {
            return None;
        }
        self.seen = g;
        self.current = self.source.load();
        Some(self.current.clone())
    }

    /// Generation of the current value.
    pub fn generation(&self) -> u64 {
        self.seen
    }

    pub fn current(&self) -> &Arc<T> {
        &self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_adopt_each_new_value_once() {
        let p = Arc::new(Published::new(Arc::new(1)));
        let mut s = Subscriber::new(p.clone());
        assert_eq!(**s.current(), 1);
        assert!(s.poll().is_none());
        p.publish(Arc::new(2));
        p.publish(Arc::new(3));
        assert_eq!(s.poll().map(|v| *v), Some(3), "latest wins");
        assert!(s.poll().is_none());
    }

    #[test]
    fn concurrent_readers_never_see_torn_values() {
        let p = Arc::new(Published::new(Arc::new((0u64, 0u64))));
        let writer = {
            let p = p.clone();
            std::thread::spawn(move || {
                for i in 1..=2000u64 {
                    p.publish(Arc::new((i, i * 2)));
                }
            })
        };
        let mut s = Subscriber::new(p.clone());
        let mut last = 0;
        while !writer.is_finished() || s.poll().is_some() {
            if let Some(v) = s.poll() {
                assert_eq!(v.1, v.0 * 2);
                assert!(v.0 >= last, "generations never go back");
                last = v.0;
            }
        }
        writer.join().unwrap();
        s.poll();
        assert_eq!(s.current().0, 2000);
    }
}
