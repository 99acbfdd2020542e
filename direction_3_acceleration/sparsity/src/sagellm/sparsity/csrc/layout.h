// Packed 2:4 weight layout shared by every kernel path (portable C++, AVX2, AVX-512) and by packed24.py.
//
// A 2:4 row keeps 2 values of every group of 4 inputs, plus each kept value's position 0-3 in its group
// (2 bits). The row is cut into windows; a window's kept values sit in the order one AVX2 register
// gathers them, so the AVX2 kernel needs no reordering and the AVX-512 kernel reads two windows at once.
//
//   int8 window: 64 inputs -> 32 kept values (32 bytes) + 32 indices (8 bytes, one little-endian uint64)
//   bf16 window: 32 inputs -> 16 kept values (32 bytes) + 16 indices (4 bytes, one little-endian uint32)
//
// Either way a window covers 64 bytes of activations, as two 32-byte halves A0 (first half of the
// inputs) and A1. AVX2's byte shuffle (vpshufb) only reads within a 16-byte lane, so value slot p of
// the 32-byte value register is gathered from lane p / 16 of A0 for the first 8 bytes of that lane and
// of A1 for the last 8, then the two shuffles are blended (dwords 2,3,6,7 from A1):
//
//   value bytes:  [ lane 0: A0.lane0 | A1.lane0 ][ lane 1: A0.lane1 | A1.lane1 ]
//   int8 slot p:  input = 32*half + 16*lane + 4*group + idx,  half = (p%16)/8, lane = p/16, group = (p%8)/2
//   bf16 slot e:  input = 16*half +  8*lane + 4*group + idx,  half = (e%8)/4,  lane = e/8,  group = (e%4)/2
//
// Slots 2j and 2j+1 are the two kept values of one group, in increasing position. A slot's 2-bit index
// sits in the bit field that the cheapest AVX2 decode hands it:
//   int8: broadcast the uint64 to 4 qwords, shift qword q right by 2q, keep 2 bits of each byte:
//         byte p = 8q + b holds field 4b + q           -> field(p) = 4*(p%8) + p/8
//   bf16: broadcast the uint32 to 8 dwords, shift dword d right by 2d, keep 2 bits of each 16-bit half:
//         element e = 2d + h holds field d + 8h        -> field(e) = e/2 + 8*(e%2)
// Rows are zero-padded to whole windows (padding: value 0, index 0), so K needs no particular multiple.
#pragma once

#include <cstdint>

namespace sagellm_sparsity {

constexpr int64_t kInt8WindowInputs = 64;
constexpr int64_t kInt8WindowValues = 32;
constexpr int64_t kInt8WindowIndexBytes = 8;
constexpr int64_t kBf16WindowInputs = 32;
constexpr int64_t kBf16WindowValues = 16;
constexpr int64_t kBf16WindowIndexBytes = 4;
// Activation rows are copied into buffers padded to this many bytes, so a kernel reading two windows
// at once (AVX-512) never reads past the row, whatever K is.
constexpr int64_t kActivationPadBytes = 128;

constexpr int int8_slot_input(int p) { return 32 * ((p % 16) / 8) + 16 * (p / 16) + 4 * ((p % 8) / 2); }
constexpr int int8_slot_field(int p) { return 4 * (p % 8) + p / 8; }
constexpr int bf16_slot_input(int e) { return 16 * ((e % 8) / 4) + 8 * (e / 8) + 4 * ((e % 4) / 2); }
constexpr int bf16_slot_field(int e) { return e / 2 + 8 * (e % 2); }

inline int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

}  // namespace sagellm_sparsity
