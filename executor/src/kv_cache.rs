//! A request's KV cache on the device: per layer, the KRope and VProj outputs of every processed position.
//!
//! Storage grows by doubling (a copy, never a recomputation), so a request's cached values are exactly the op
//! outputs its trace commits to. On the CPU backend the engine's host step keeps the cache in host memory
//! ([`HostKv`]) instead of device tensors.

use crate::error::EngineError;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor};

/// Smallest allocation, in positions.
const MIN_CAPACITY: usize = 16;

/// Keys and values in host memory: per layer, `[capacity][kv_dim]` row-major.
#[derive(Debug, Clone)]
pub struct HostKv {
    keys: Vec<Vec<i32>>,
    values: Vec<Vec<i32>>,
    kv_dim: usize,
}

impl HostKv {
    /// Writes the key and value of position `pos` of `layer` (within the reserved capacity).
    pub fn write(
        &mut self,
        layer: usize,
        pos: usize,
        key: &[i32],
        value: &[i32],
    ) -> Result<(), EngineError> {
        let w = self.kv_dim;
        let (k, v) = match (self.keys.get_mut(layer), self.values.get_mut(layer)) {
            (Some(k), Some(v)) => (k, v),
            _ => return Err(EngineError::shape("kv_cache", format!("no layer {layer}"))),
        };
        let at = pos * w..(pos + 1) * w;
        if key.len() != w || value.len() != w || at.end > k.len() {
            return Err(EngineError::shape(
                "kv_cache",
                format!(
                    "writing {} keys and {} values of {w} at position {pos} into {} positions",
                    key.len(),
                    value.len(),
                    k.len() / w.max(1)
                ),
            ));
        }
        k[at.clone()].copy_from_slice(key);
        v[at].copy_from_slice(value);
        Ok(())
    }

    /// Keys of `layer`, `[capacity][kv_dim]` (rows past the written positions are zero).
    pub fn keys(&self, layer: usize) -> Option<&[i32]> {
        self.keys.get(layer).map(Vec::as_slice)
    }

    /// Values of `layer`, as [`HostKv::keys`].
    pub fn values(&self, layer: usize) -> Option<&[i32]> {
        self.values.get(layer).map(Vec::as_slice)
    }

    fn grow(&mut self, capacity: usize) {
        let n = capacity * self.kv_dim;
        self.keys.iter_mut().for_each(|k| k.resize(n, 0));
        self.values.iter_mut().for_each(|v| v.resize(n, 0));
    }
}

/// Keys and values of one request, `[capacity, kv_dim]` I32 per layer: device tensors, or host vectors
/// ([`KvCache::new_host`]).
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    keys: Vec<Tensor<B, 2, Int>>,
    values: Vec<Tensor<B, 2, Int>>,
    host: Option<HostKv>,
    kv_dim: usize,
    capacity: usize,
    len: usize,
    device: B::Device,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache with room for `capacity` positions (at least a small minimum).
    pub fn new(n_layers: usize, kv_dim: usize, capacity: usize, device: &B::Device) -> Self {
        let capacity = capacity.max(MIN_CAPACITY);
        let zeros = || Tensor::<B, 2, Int>::zeros([capacity, kv_dim], (device, DType::I32));
        Self {
            keys: (0..n_layers).map(|_| zeros()).collect(),
            values: (0..n_layers).map(|_| zeros()).collect(),
            host: None,
            kv_dim,
            capacity,
            len: 0,
            device: device.clone(),
        }
    }

    /// An empty cache in host memory (no device tensors; see [`KvCache::host`]).
    pub fn new_host(n_layers: usize, kv_dim: usize, capacity: usize, device: &B::Device) -> Self {
        let capacity = capacity.max(MIN_CAPACITY);
        Self {
            keys: Vec::new(),
            values: Vec::new(),
            host: Some(HostKv {
                keys: vec![vec![0; capacity * kv_dim]; n_layers],
                values: vec![vec![0; capacity * kv_dim]; n_layers],
                kv_dim,
            }),
            kv_dim,
            capacity,
            len: 0,
            device: device.clone(),
        }
    }

    /// The host storage of a cache made by [`KvCache::new_host`].
    pub fn host(&self) -> Option<&HostKv> {
        self.host.as_ref()
    }

    /// The host storage, for writing.
    pub fn host_mut(&mut self) -> Option<&mut HostKv> {
        self.host.as_mut()
    }

    /// Positions committed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Makes room for `positions` positions in every layer.
    pub fn reserve(&mut self, positions: usize) {
        if positions <= self.capacity {
            return;
        }
        let capacity = positions.max(self.capacity * 2);
        if let Some(host) = &mut self.host {
            host.grow(capacity);
            self.capacity = capacity;
            return;
        }
        let extra = capacity - self.capacity;
        let (kv_dim, device) = (self.kv_dim, self.device.clone());
        let grow = |t: &mut Tensor<B, 2, Int>| {
            let zeros = Tensor::<B, 2, Int>::zeros([extra, kv_dim], (&device, DType::I32));
            *t = Tensor::cat(vec![t.clone(), zeros], 0);
        };
        self.keys.iter_mut().for_each(grow);
        self.values.iter_mut().for_each(grow);
        self.capacity = capacity;
    }

    /// Writes rows `first..first + n` of `layer` (not yet committed: see [`KvCache::commit`]).
    pub fn write(
        &mut self,
        layer: usize,
        first: usize,
        keys: Tensor<B, 2, Int>,
        values: Tensor<B, 2, Int>,
    ) -> Result<(), EngineError> {
        let [n, w] = keys.dims();
        if values.dims() != [n, w] || w != self.kv_dim || first + n > self.capacity {
            return Err(EngineError::shape(
                "kv_cache",
                format!(
                    "writing {n}x{w} at {first} into {}x{}",
                    self.capacity, self.kv_dim
                ),
            ));
        }
        if first != self.len {
            return Err(EngineError::shape(
                "kv_cache",
                format!(
                    "writing at {first} but {} positions are committed",
                    self.len
                ),
            ));
        }
        let range = [first..first + n, 0..w];
        let (k, v) = match (self.keys.get_mut(layer), self.values.get_mut(layer)) {
            (Some(k), Some(v)) => (k, v),
            _ => return Err(EngineError::shape("kv_cache", format!("no layer {layer}"))),
        };
        // Take the tensors out so the backend can write in place (flex copies shared storage on write).
        let placeholder = || Tensor::<B, 2, Int>::empty([1, 1], (&self.device, DType::I32));
        *k = std::mem::replace(k, placeholder()).slice_assign(range.clone(), keys);
        *v = std::mem::replace(v, placeholder()).slice_assign(range, values);
        Ok(())
    }

    /// Marks `n` more positions as written in every layer.
    pub fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Keys of `layer` (`[capacity, kv_dim]`; rows past the written positions are zero).
    pub fn keys(&self, layer: usize) -> Option<Tensor<B, 2, Int>> {
        self.keys.get(layer).cloned()
    }

    /// Values of `layer`, as [`KvCache::keys`].
    pub fn values(&self, layer: usize) -> Option<Tensor<B, 2, Int>> {
        self.values.get(layer).cloned()
    }
}
