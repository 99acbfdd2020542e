// Shared-memory collectives between the ranks of one host (sagellm-collective-ops, backend "shm").
//
// Every rank maps the same POSIX shared-memory segment (created and named by shm_backend.py):
//
//   header      magic, world size, sizes, an abort word, each rank's pid
//   arrive[r]   one futex word per rank (own 128-byte line): how many syncs rank r has reached
//   mail[s][d]  sent/acked futex words for point-to-point s -> d
//   slots       2 sets x world x slot_bytes: each rank's staged input (set = use count parity)
//   results     2 sets x slot_bytes: reduced slices, read back by the other ranks
//   mailboxes   world x world x mail_bytes
//
// A collective is split into chunks that fit a slot. Small all_reduces take one sync: every rank stages
// its input, then every rank reduces all of it in rank order 0..n-1. Large ones take two: each rank
// reduces only its own slice (reduce-scatter), publishes it, then copies the others' slices (all-gather).
// Either way an element is summed in the same order on every rank, so all ranks get the same bits, and
// with two ranks an fp32 sum is a+b, as gloo's. Double-buffered sets make a slot safe to reuse: a rank
// writes set s at use u only after every rank passed the first sync of use u-1, i.e. finished use u-2.
//
// all_gather and reduce_scatter take one sync per chunk and run on every rank at once:
//
//   all_gather      copy my chunk into my slot -> arrive -> copy my chunk to out (while the peers catch
//                   up) -> wait for all -> copy every peer's slot to out
//   reduce_scatter  copy the rows rank k reduces into my slot's part for k (k != me) -> sync -> reduce my
//                   own rows: my input, then every peer's slot part, in rank order 0..n-1
//
// Their outputs come from a small per-group pool (OutputPool): a fresh 64 MiB tensor costs ~16k first-touch
// page faults, 5-8x the time of the copies themselves, which is what held these two at 0.05-0.10 of memcpy.
// Outputs of 16 MiB and more are written with streaming (non-temporal) stores: they skip the
// read-for-ownership a plain store makes (the two ranks share one memory bus) and leave the slots the
// peers are reading in the cache.
//
// Waits spin for spin_ns (a busy peer answers in well under a microsecond), then sleep in FUTEX_WAIT on
// the shared word; a writer calls FUTEX_WAKE only when the word's waiter count says someone sleeps. A
// wait gives up after timeout_ns, when a peer's pid is gone, or when a peer raised the abort word.
#include <torch/extension.h>

#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <sagellm/avx512.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace {

constexpr uint32_t kMagic = 0x5347434fu;  // "SGCO"
constexpr int64_t kLine = 128;            // keeps every futex word on its own pair of cache lines
constexpr int64_t kMaxWorld = 64;
constexpr int64_t kHeaderBytes = 4096;
constexpr int64_t kAlign = 4096;
constexpr int64_t kPureSpinNs = 5000;  // spin without yielding this long: a running peer answers well within it
constexpr int64_t kPoolMinBytes = 1 << 20;        // outputs this large come from the pool; smaller: at::empty
constexpr int64_t kPoolMaxBytes = 256LL << 20;    // the pool keeps at most this much (free or handed out)
constexpr int64_t kPoolMaxBuffers = 4;
constexpr int64_t kStreamMinBytes = 16LL << 20;   // outputs this large are written with non-temporal stores
constexpr int64_t kHugePage = 2 << 20;

int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

struct Layout {
  int64_t world, slot_bytes, mail_bytes;
  int64_t arrive_off, mail_ctrl_off, slots_off, results_off, mailboxes_off, total;

  Layout(int64_t w, int64_t slot, int64_t mail) : world(w), slot_bytes(slot), mail_bytes(mail) {
    arrive_off = kHeaderBytes;
    mail_ctrl_off = align_up(arrive_off + w * kLine, kAlign);
    slots_off = align_up(mail_ctrl_off + w * w * 2 * kLine, kAlign);
    results_off = slots_off + 2 * w * slot_bytes;
    mailboxes_off = results_off + 2 * slot_bytes;
    total = align_up(mailboxes_off + w * w * mail_bytes, kAlign);
  }
};

struct Header {
  uint32_t magic;
  uint32_t world;
  int64_t slot_bytes;
  int64_t mail_bytes;
  std::atomic<uint32_t> aborted;  // a rank that failed mid-collective raises it so its peers fail fast
  uint32_t pad;
  int64_t pids[kMaxWorld];
};

// One futex word plus the count of sleepers on it, a line apart so spinning readers do not slow writers.
struct Word {
  std::atomic<uint32_t> value;
  char pad0[64 - sizeof(std::atomic<uint32_t>)];
  std::atomic<uint32_t> sleepers;
  char pad1[64 - sizeof(std::atomic<uint32_t>)];
};
static_assert(sizeof(Word) == kLine, "a Word is one kLine");

long futex(std::atomic<uint32_t>* word, int op, uint32_t value, const struct timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, timeout, nullptr, 0);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline bool reached(uint32_t value, uint32_t target) { return static_cast<int32_t>(value - target) >= 0; }

// Gone, or a zombie its parent has not reaped yet (kill(pid, 0) still succeeds on those).
bool process_alive(pid_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::FILE* stat = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (stat == nullptr) return true;  // no procfs: trust kill()
  char buf[512] = {0};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, stat);
  std::fclose(stat);
  const char* close_paren = std::strrchr(buf, ')');  // the command name may itself hold spaces or parens
  if (n == 0 || close_paren == nullptr || close_paren[1] == 0) return true;
  return close_paren[2] != 'Z' && close_paren[2] != 'X';
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------------------- reduction

enum class Op : int { kSum = 0, kMax = 1, kMin = 2 };

inline float combine(float acc, float x, Op op) {
  if (op == Op::kSum) return acc + x;
  if (op == Op::kMax) return x > acc ? x : acc;
  return x < acc ? x : acc;
}

#ifdef SAGELLM_AVX512
template <typename T>
inline __m512 load_f32(const T* p) {
  if constexpr (std::is_same_v<T, c10::Half>) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  } else {
    return sagellm_simd::load16(p);
  }
}

template <typename T>
inline void store_f32(T* p, __m512 v) {
  if constexpr (std::is_same_v<T, c10::Half>) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  } else {
    sagellm_simd::store16(p, v);
  }
}

// As store_f32, bypassing the caches (p aligned to the store's width: 64 bytes for float, 32 for 16-bit).
template <typename T>
inline void stream_f32(T* p, __m512 v) {
  if constexpr (std::is_same_v<T, float>) {
    _mm512_stream_ps(reinterpret_cast<float*>(p), v);
  } else {
    alignas(32) T lanes[16];
    store_f32(lanes, v);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes)));
  }
}

inline __m512 combine16(__m512 acc, __m512 x, Op op) {
  if (op == Op::kSum) return _mm512_add_ps(acc, x);
  // max(x, acc) keeps acc unless x is greater, as the scalar combine does for non-NaN values
  if (op == Op::kMax) return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, acc, _CMP_GT_OQ), acc, x);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, acc, _CMP_LT_OQ), acc, x);
}
#endif

// dsts[j][i] = srcs[0][i] op srcs[1][i] op ... (in this order, in fp32, rounded to T once).
// `stream`: a single, aligned dst is written with non-temporal stores (the AVX-512 path; others ignore it).
template <typename T>
void reduce_typed(const std::vector<const void*>& srcs, const std::vector<void*>& dsts, int64_t count, Op op,
                  bool stream) {
  const int64_t n = static_cast<int64_t>(srcs.size());
  int64_t i = 0;
#ifdef SAGELLM_AVX512
  if (stream && dsts.size() == 1 && reinterpret_cast<uintptr_t>(dsts[0]) % 64 == 0) {
    T* dst = static_cast<T*>(dsts[0]);
    for (; i + 16 <= count; i += 16) {
      __m512 acc = load_f32(static_cast<const T*>(srcs[0]) + i);
      for (int64_t k = 1; k < n; ++k) acc = combine16(acc, load_f32(static_cast<const T*>(srcs[k]) + i), op);
      stream_f32(dst + i, acc);
    }
    _mm_sfence();
  }
  for (; i + 16 <= count; i += 16) {
    __m512 acc = load_f32(static_cast<const T*>(srcs[0]) + i);
    for (int64_t k = 1; k < n; ++k) acc = combine16(acc, load_f32(static_cast<const T*>(srcs[k]) + i), op);
    for (void* dst : dsts) store_f32(static_cast<T*>(dst) + i, acc);
  }
#else
  (void)stream;
#endif
  for (; i < count; ++i) {
    float acc = static_cast<float>(static_cast<const T*>(srcs[0])[i]);
    for (int64_t k = 1; k < n; ++k) acc = combine(acc, static_cast<float>(static_cast<const T*>(srcs[k])[i]), op);
    for (void* dst : dsts) static_cast<T*>(dst)[i] = static_cast<T>(acc);
  }
}

void reduce_any(at::ScalarType dtype, const std::vector<const void*>& srcs, const std::vector<void*>& dsts,
                int64_t count, Op op, bool stream = false) {
  switch (dtype) {
    case at::kFloat: return reduce_typed<float>(srcs, dsts, count, op, stream);
    case at::kBFloat16: return reduce_typed<c10::BFloat16>(srcs, dsts, count, op, stream);
    case at::kHalf: return reduce_typed<c10::Half>(srcs, dsts, count, op, stream);
    default: throw std::invalid_argument(std::string("shm reductions take float32, bfloat16 or float16, not ") +
                                         c10::toString(dtype));
  }
}

// dst <- src; `stream` writes dst with non-temporal stores (SSE2, every x86-64 has it) past an aligned head.
void copy_bytes(char* dst, const char* src, int64_t n, bool stream) {
#if defined(__SSE2__)
  if (stream && n >= 4096) {
    const int64_t head = static_cast<int64_t>((64 - reinterpret_cast<uintptr_t>(dst) % 64) % 64);
    std::memcpy(dst, src, head);
    int64_t i = head;
    for (; i + 64 <= n; i += 64) {
      const __m128i* from = reinterpret_cast<const __m128i*>(src + i);
      __m128i* to = reinterpret_cast<__m128i*>(dst + i);
      const __m128i a = _mm_loadu_si128(from), b = _mm_loadu_si128(from + 1);
      const __m128i c = _mm_loadu_si128(from + 2), d = _mm_loadu_si128(from + 3);
      _mm_stream_si128(to, a);
      _mm_stream_si128(to + 1, b);
      _mm_stream_si128(to + 2, c);
      _mm_stream_si128(to + 3, d);
    }
    _mm_sfence();
    std::memcpy(dst + i, src + i, n - i);
    return;
  }
#endif
  (void)stream;
  std::memcpy(dst, src, n);
}

char* bytes_of(const at::Tensor& t) { return static_cast<char*>(t.data_ptr()); }

void check_cpu_contiguous(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu(), "shm backend: ", what, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.is_contiguous(), "shm backend: ", what, " must be contiguous");
}

// ------------------------------------------------------------------------------- output buffers

// The output tensors of all_gather and reduce_scatter, reused once their caller has let go of them.
//
// A fresh tensor of many MiB is fresh memory: the kernel zero-fills every 4 KiB page on its first touch,
// and at 32-64 MiB that costs several times the collective's copies (a 64 MiB all_gather spent ~25 of its
// ~31 ms faulting in its output). The pool keeps a few buffers and hands one out again only when its
// storage's use count says the pool holds the last reference, i.e. the caller dropped every tensor and
// view of the last result: a result never changes under its holder. Buffers are madvised for transparent
// huge pages (a 2 MiB fault instead of 512 small ones where THP is on; harmless where it is off).
// Called with the GIL held, like every entry point, so it needs no lock of its own.
class OutputPool {
 public:
  at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    const int64_t nbytes = c10::multiply_integers(sizes) * static_cast<int64_t>(options.dtype().itemsize());
    if (nbytes < kPoolMinBytes) return at::empty(sizes, options);
    at::Storage storage = take(nbytes);
    if (!storage) return at::empty(sizes, options);  // the pool is full of results still in use
    return at::empty({0}, options).set_(storage, 0, sizes);
  }

 private:
  at::Storage take(int64_t nbytes) {
    for (const at::Storage& buf : buffers_) {
      if (static_cast<int64_t>(buf.nbytes()) == nbytes && buf.use_count() == 1) return buf;
    }
    int64_t held = 0;
    for (const at::Storage& buf : buffers_) held += static_cast<int64_t>(buf.nbytes());
    auto full = [&] {
      return held + nbytes > kPoolMaxBytes || static_cast<int64_t>(buffers_.size()) >= kPoolMaxBuffers;
    };
    for (auto it = buffers_.begin(); it != buffers_.end() && full();) {  // make room: drop idle ones
      if (it->use_count() == 1) {
        held -= static_cast<int64_t>(it->nbytes());
        it = buffers_.erase(it);
      } else {
        ++it;
      }
    }
    if (full()) return {};
    at::Storage fresh = at::empty({nbytes}, at::kByte).storage();
#ifdef MADV_HUGEPAGE
    const uintptr_t begin = reinterpret_cast<uintptr_t>(fresh.data());
    const uintptr_t lo = (begin + kHugePage - 1) / kHugePage * kHugePage;
    const uintptr_t hi = (begin + nbytes) / kHugePage * kHugePage;
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // advice only: errors ignored
#endif
    buffers_.push_back(fresh);
    return fresh;
  }

  std::vector<at::Storage> buffers_;
};

// ------------------------------------------------------------------------------------ the group

class ShmComm {
 public:
  ShmComm(at::Tensor segment, int64_t rank, int64_t world, int64_t slot_bytes, int64_t mail_bytes, int64_t spin_ns,
          int64_t timeout_ns, bool create)
      : segment_(std::move(segment)), layout_(world, slot_bytes, mail_bytes), rank_(rank), world_(world),
        spin_ns_(spin_ns), timeout_ns_(timeout_ns) {
    TORCH_CHECK(world >= 1 && world <= kMaxWorld, "shm backend: world_size must be 1..", kMaxWorld);
    TORCH_CHECK(slot_bytes % kAlign == 0 && slot_bytes > 0, "shm backend: slot_bytes must be a multiple of 4096");
    TORCH_CHECK(segment_.numel() >= layout_.total, "shm backend: segment of ", segment_.numel(),
                " bytes, need ", layout_.total);
    base_ = bytes_of(segment_);
    header_ = reinterpret_cast<Header*>(base_);
    if (create) {
      header_->magic = kMagic;
      header_->world = static_cast<uint32_t>(world);
      header_->slot_bytes = slot_bytes;
      header_->mail_bytes = mail_bytes;
    } else {
      TORCH_CHECK(header_->magic == kMagic && header_->world == static_cast<uint32_t>(world) &&
                      header_->slot_bytes == slot_bytes && header_->mail_bytes == mail_bytes,
                  "shm backend: the segment was made for another group (world size or sizes differ)");
    }
    header_->pids[rank] = static_cast<int64_t>(getpid());
    sent_.assign(world, 0);
    received_.assign(world, 0);
  }

  static int64_t segment_bytes(int64_t world, int64_t slot_bytes, int64_t mail_bytes) {
    return Layout(world, slot_bytes, mail_bytes).total;
  }

  // ------------------------------------------------------------------------------ collectives
  void all_reduce(at::Tensor t, int64_t op_code, int64_t small_bytes) {
    check_cpu_contiguous(t, "all_reduce input");
    Op op = static_cast<Op>(op_code);
    const int64_t esize = t.element_size(), count = t.numel();
    const int64_t chunk = layout_.slot_bytes / esize / 64 * 64;  // elements per chunk, whole cache lines
    char* data = bytes_of(t);
    at::ScalarType dtype = t.scalar_type();
    reduce_any(dtype, {data}, {}, 0, op);  // rejects an unsupported dtype before any rank waits
    py::gil_scoped_release nogil;
    guarded([&] {
      if (count * esize <= small_bytes || world_ == 1) {
        for (int64_t start = 0; start < count; start += chunk) {
          all_reduce_small(data + start * esize, std::min(chunk, count - start), esize, dtype, op);
        }
      } else {
        for (int64_t start = 0; start < count; start += chunk) {
          all_reduce_sliced(data + start * esize, std::min(chunk, count - start), esize, dtype, op);
        }
      }
    });
  }

  // out = every rank's `in`, stacked along dim 0 in rank order.
  at::Tensor all_gather(at::Tensor in) {
    check_cpu_contiguous(in, "all_gather input");
    TORCH_CHECK(in.dim() >= 1, "shm backend: all_gather takes a tensor with at least one dimension");
    std::vector<int64_t> sizes = in.sizes().vec();
    sizes[0] *= world_;
    at::Tensor out = pool_.empty(sizes, in.options());
    const int64_t bytes = in.numel() * in.element_size();
    const bool stream = bytes * world_ >= kStreamMinBytes;
    const char* src = bytes_of(in);
    char* dst = bytes_of(out);
    py::gil_scoped_release nogil;
    guarded([&] {
      for (int64_t start = 0; start < bytes; start += layout_.slot_bytes) {
        const int64_t len = std::min(layout_.slot_bytes, bytes - start);
        const int64_t set = next_set();
        std::memcpy(slot(set, rank_), src + start, len);
        arrive_all();
        copy_bytes(dst + rank_ * bytes + start, src + start, len, stream);  // while the peers catch up
        wait_all();
        for (int64_t r = 0; r < world_; ++r) {
          if (r != rank_) copy_bytes(dst + r * bytes + start, slot(set, r), len, stream);
        }
      }
    });
    return out;
  }

  // out = part `rank` of in (dim 0 split world ways), reduced over ranks in rank order.
  //
  //   my slot, one chunk:  [ rows for rank k0 | rows for rank k1 | ... ]   k0 < k1 < ... all ranks but me
  //   I reduce:            in[my rows], slot(r)[my part] for every r != me, combined in rank order
  at::Tensor reduce_scatter(at::Tensor in, int64_t op_code) {
    check_cpu_contiguous(in, "reduce_scatter input");
    TORCH_CHECK(in.dim() >= 1 && in.size(0) % world_ == 0,
                "shm backend: reduce_scatter needs dim 0 divisible by the world size");
    Op op = static_cast<Op>(op_code);
    const at::ScalarType dtype = in.scalar_type();
    reduce_any(dtype, {bytes_of(in)}, {}, 0, op);  // rejects an unsupported dtype before any rank waits
    std::vector<int64_t> sizes = in.sizes().vec();
    sizes[0] /= world_;
    at::Tensor out = pool_.empty(sizes, in.options());
    const int64_t esize = in.element_size(), count = out.numel();
    // >= 16 elements (slot_bytes >= 4096, world <= 64); whole cache lines where there is room for them
    const int64_t per_part = layout_.slot_bytes / std::max<int64_t>(world_ - 1, 1) / esize;
    const int64_t chunk = per_part >= 64 ? per_part / 64 * 64 : per_part;
    const bool stream = count * esize >= kStreamMinBytes / 2;  // out of 8 MiB: 16 MiB in at two ranks
    const char* src = bytes_of(in);
    char* dst = bytes_of(out);
    py::gil_scoped_release nogil;
    guarded([&] {
      std::vector<const void*> srcs(world_);
      for (int64_t start = 0; start < count; start += chunk) {
        const int64_t len = std::min(chunk, count - start);
        const int64_t set = next_set();
        for (int64_t k = 0; k < world_; ++k) {  // stage what rank k reduces: its rows of my input
          if (k == rank_) continue;
          char* part = slot(set, rank_) + part_index(k, rank_) * chunk * esize;
          std::memcpy(part, src + (k * count + start) * esize, len * esize);
        }
        sync_all();
        for (int64_t r = 0; r < world_; ++r) {
          srcs[r] = r == rank_ ? src + (rank_ * count + start) * esize
                               : slot(set, r) + part_index(rank_, r) * chunk * esize;
        }
        reduce_any(dtype, srcs, {dst + start * esize}, len, op, stream);
      }
    });
    return out;
  }

  void broadcast(at::Tensor t, int64_t src_rank) {
    check_cpu_contiguous(t, "broadcast tensor");
    const int64_t bytes = t.numel() * t.element_size();
    char* data = bytes_of(t);
    py::gil_scoped_release nogil;
    guarded([&] {
      for (int64_t start = 0; start < bytes; start += layout_.slot_bytes) {
        const int64_t len = std::min(layout_.slot_bytes, bytes - start);
        const int64_t set = next_set();
        if (rank_ == src_rank) std::memcpy(slot(set, src_rank), data + start, len);
        sync_all();
        if (rank_ != src_rank) std::memcpy(data + start, slot(set, src_rank), len);
      }
    });
  }

  void barrier() {
    py::gil_scoped_release nogil;
    guarded([&] { sync_all(); });
  }

  // ------------------------------------------------------------------------- point to point
  // Mailbox s->d holds one chunk: the sender waits until the receiver acked the previous one.
  void send(at::Tensor t, int64_t dst) {
    check_cpu_contiguous(t, "send tensor");
    const int64_t bytes = t.numel() * t.element_size();
    const char* data = bytes_of(t);
    Word* sent = mail_word(rank_, dst, 0);
    Word* acked = mail_word(rank_, dst, 1);
    py::gil_scoped_release nogil;
    guarded([&] {
      for (int64_t start = 0; start < bytes || start == 0; start += layout_.mail_bytes) {
        const int64_t len = std::min(layout_.mail_bytes, bytes - start);
        wait_for(acked, sent_[dst], dst, "to take the previous message");
        std::memcpy(mailbox(rank_, dst), data + start, len);
        post(sent, ++sent_[dst]);
        if (bytes == 0) break;
      }
    });
  }

  void recv(at::Tensor t, int64_t src) {
    check_cpu_contiguous(t, "recv tensor");
    const int64_t bytes = t.numel() * t.element_size();
    char* data = bytes_of(t);
    Word* sent = mail_word(src, rank_, 0);
    Word* acked = mail_word(src, rank_, 1);
    py::gil_scoped_release nogil;
    guarded([&] {
      for (int64_t start = 0; start < bytes || start == 0; start += layout_.mail_bytes) {
        const int64_t len = std::min(layout_.mail_bytes, bytes - start);
        wait_for(sent, received_[src] + 1, src, "to send");
        std::memcpy(data + start, mailbox(src, rank_), len);
        post(acked, ++received_[src]);
        if (bytes == 0) break;
      }
    });
  }

  void abort() { header_->aborted.store(1, std::memory_order_seq_cst); wake_everyone(); }

 private:
  // --------------------------------------------------------------------------- the two algorithms
  void all_reduce_small(char* data, int64_t count, int64_t esize, at::ScalarType dtype, Op op) {
    const int64_t set = next_set();
    std::memcpy(slot(set, rank_), data, count * esize);
    sync_all();
    std::vector<const void*> srcs(world_);
    for (int64_t r = 0; r < world_; ++r) srcs[r] = r == rank_ ? static_cast<const void*>(data) : slot(set, r);
    reduce_any(dtype, srcs, {data}, count, op);
  }

  //  chunk of `count` elements, slice k = [bounds[k], bounds[k+1]) is reduced by rank k:
  //  stage others' slices -> sync -> reduce own slice into data + results -> sync -> copy others' slices back
  void all_reduce_sliced(char* data, int64_t count, int64_t esize, at::ScalarType dtype, Op op) {
    const int64_t set = next_set();
    std::vector<int64_t> bounds(world_ + 1);
    for (int64_t k = 0; k <= world_; ++k) bounds[k] = std::min(count, (count * k / world_ + 15) / 16 * 16);
    bounds[world_] = count;
    char* mine = slot(set, rank_);
    for (int64_t k = 0; k < world_; ++k) {
      if (k != rank_) std::memcpy(mine + bounds[k] * esize, data + bounds[k] * esize, (bounds[k + 1] - bounds[k]) * esize);
    }
    sync_all();
    const int64_t lo = bounds[rank_], len = bounds[rank_ + 1] - lo;
    std::vector<const void*> srcs(world_);
    for (int64_t r = 0; r < world_; ++r) srcs[r] = (r == rank_ ? data : slot(set, r)) + lo * esize;
    reduce_any(dtype, srcs, {data + lo * esize, result(set) + lo * esize}, len, op);
    sync_all();
    for (int64_t k = 0; k < world_; ++k) {
      if (k != rank_) std::memcpy(data + bounds[k] * esize, result(set) + bounds[k] * esize, (bounds[k + 1] - bounds[k]) * esize);
    }
  }

  // ------------------------------------------------------------------------------ synchronisation
  int64_t next_set() { return (uses_++) & 1; }

  // Where in rank `writer`'s slot the rows for rank `reader` go (reduce_scatter): the writer skips itself.
  static int64_t part_index(int64_t reader, int64_t writer) { return reader < writer ? reader : reader - 1; }

  void sync_all() {
    arrive_all();
    wait_all();
  }

  // The two halves of sync_all, for work that needs neither the peers' data nor the slots in between.
  void arrive_all() { post(arrive(rank_), ++seq_); }

  void wait_all() {
    for (int64_t r = 0; r < world_; ++r) {
      if (r != rank_) wait_for(arrive(r), seq_, r, "to arrive");
    }
  }

  void post(Word* w, uint32_t value) {
    w->value.store(value, std::memory_order_seq_cst);
    if (w->sleepers.load(std::memory_order_seq_cst) != 0) futex(&w->value, FUTEX_WAKE, INT32_MAX, nullptr);
  }

  // Spin, then sleep on the word in slices of at most 50 ms, checking the peer and the deadline between.
  void wait_for(Word* w, uint32_t target, int64_t peer, const char* what) {
    if (reached(w->value.load(std::memory_order_acquire), target)) return;
    const int64_t start = now_ns();
    for (int64_t i = 1;; ++i) {
      cpu_relax();
      if (reached(w->value.load(std::memory_order_acquire), target)) return;
      if ((i & 63) == 0) {
        const int64_t waited = now_ns() - start;
        if (waited > spin_ns_) break;
        // past the first few microseconds the peer may be off-CPU (more runnable threads than cores):
        // yielding lets it run here, and costs a fraction of a microsecond when nothing else is runnable
        if (waited > kPureSpinNs) sched_yield();
      }
    }
    while (true) {
      w->sleepers.fetch_add(1, std::memory_order_seq_cst);
      uint32_t seen = w->value.load(std::memory_order_seq_cst);
      if (!reached(seen, target)) {
        struct timespec slice = {0, 50 * 1000 * 1000};
        futex(&w->value, FUTEX_WAIT, seen, &slice);
      }
      w->sleepers.fetch_sub(1, std::memory_order_seq_cst);
      if (reached(w->value.load(std::memory_order_acquire), target)) return;
      check_peer(peer, what, now_ns() - start);
    }
  }

  void check_peer(int64_t peer, const char* what, int64_t waited_ns) {
    if (header_->aborted.load(std::memory_order_acquire) != 0) {
      throw std::runtime_error("shm backend: another rank aborted the group (it failed or timed out)");
    }
    const int64_t pid = header_->pids[peer];
    if (pid > 0 && !process_alive(static_cast<pid_t>(pid))) {
      throw std::runtime_error("shm backend: rank " + std::to_string(peer) + " (pid " + std::to_string(pid) +
                               ") died while rank " + std::to_string(rank_) + " waited for it " + what);
    }
    if (waited_ns > timeout_ns_) {
      throw std::runtime_error("shm backend: rank " + std::to_string(rank_) + " waited " +
                               std::to_string(waited_ns / 1000000) + " ms for rank " + std::to_string(peer) + " " +
                               what + " (timeout " + std::to_string(timeout_ns_ / 1000000) + " ms)");
    }
  }

  // A failed wait leaves the group out of step: raise the abort word so the peers fail too, not time out.
  template <typename F>
  void guarded(F&& body) {
    try {
      body();
    } catch (...) {
      abort();
      throw;
    }
  }

  void wake_everyone() {
    for (int64_t r = 0; r < world_; ++r) futex(&arrive(r)->value, FUTEX_WAKE, INT32_MAX, nullptr);
    for (int64_t s = 0; s < world_; ++s) {
      for (int64_t d = 0; d < world_; ++d) {
        futex(&mail_word(s, d, 0)->value, FUTEX_WAKE, INT32_MAX, nullptr);
        futex(&mail_word(s, d, 1)->value, FUTEX_WAKE, INT32_MAX, nullptr);
      }
    }
  }

  Word* arrive(int64_t r) { return reinterpret_cast<Word*>(base_ + layout_.arrive_off + r * kLine); }
  Word* mail_word(int64_t s, int64_t d, int64_t which) {
    return reinterpret_cast<Word*>(base_ + layout_.mail_ctrl_off + ((s * world_ + d) * 2 + which) * kLine);
  }
  char* slot(int64_t set, int64_t r) { return base_ + layout_.slots_off + (set * world_ + r) * layout_.slot_bytes; }
  char* result(int64_t set) { return base_ + layout_.results_off + set * layout_.slot_bytes; }
  char* mailbox(int64_t s, int64_t d) { return base_ + layout_.mailboxes_off + (s * world_ + d) * layout_.mail_bytes; }

  at::Tensor segment_;  // keeps the mapping alive as long as this object
  Layout layout_;
  int64_t rank_, world_, spin_ns_, timeout_ns_;
  char* base_ = nullptr;
  Header* header_ = nullptr;
  uint32_t seq_ = 0;
  uint64_t uses_ = 0;
  std::vector<uint32_t> sent_, received_;
  OutputPool pool_;
};

// The kernel alone, for the ISA-fallback tests: out = inputs[0] op inputs[1] op ... (rank order).
void reduce_tensors(std::vector<at::Tensor> inputs, at::Tensor out, int64_t op_code) {
  std::vector<const void*> srcs;
  for (const at::Tensor& t : inputs) {
    check_cpu_contiguous(t, "input");
    TORCH_CHECK(t.numel() == out.numel() && t.scalar_type() == out.scalar_type(), "inputs must match out");
    srcs.push_back(t.data_ptr());
  }
  check_cpu_contiguous(out, "out");
  reduce_any(out.scalar_type(), srcs, {out.data_ptr()}, out.numel(), static_cast<Op>(op_code));
}

bool built_with_avx512() {
#ifdef SAGELLM_AVX512
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<ShmComm>(m, "ShmComm")
      .def(py::init<at::Tensor, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool>())
      .def_static("segment_bytes", &ShmComm::segment_bytes)
      .def("all_reduce", &ShmComm::all_reduce)
      .def("all_gather", &ShmComm::all_gather)
      .def("reduce_scatter", &ShmComm::reduce_scatter)
      .def("broadcast", &ShmComm::broadcast)
      .def("barrier", &ShmComm::barrier)
      .def("send", &ShmComm::send)
      .def("recv", &ShmComm::recv)
      .def("abort", &ShmComm::abort);
  m.def("reduce_tensors", &reduce_tensors);
  m.def("built_with_avx512", &built_with_avx512);
}
