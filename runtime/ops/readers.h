// Dataset readers (IDX, CIFAR-10 binary batches, CSV) and image transforms
// (random crop, horizontal flip) for `data` stages.
//
// A reader produces one part of a data set: of `count` parts, part `index`
// holds rows [floor(index * n / count), floor((index + 1) * n / count)), so
// the parts concatenate to the whole, and each reads only its own rows where
// the format allows. Every byte read is validated; a malformed file is an
// error naming the file, the byte offset or line, and what was expected.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/ops/table.h"

namespace mlp::plan::v1 {
class Call;
class Plan;
}  // namespace mlp::plan::v1

namespace mlp::rt::ops {

struct TaskContext;
struct OpError;

struct ReadPart {
  uint32_t index = 0, count = 1;
  std::function<bool()> cancelled;  // polled while reading; may be empty
};

// IDX (MNIST layout), each file raw or gzip (told by its first bytes, not its
// name): `image` U8 {rows, cols} and `label` I64. `limit` > 0 caps the
// examples before they are cut into parts.
bool ReadIdx(const std::string& images, const std::string& labels, uint64_t limit, const ReadPart& part, Table* out,
             std::string* error);

// CIFAR-10 binary batches in `dir` (or its `cifar-10-batches-bin`
// subdirectory): data_batch_1..5.bin when `train`, else test_batch.bin; raw,
// 3073-byte records. `image` U8 {3, 32, 32} (CHW) and `label` I64 in 0..9.
bool ReadCifar10(const std::string& dir, bool train, uint64_t limit, const ReadPart& part, Table* out,
                 std::string* error);

// CSV with a header row (RFC 4180 quoting; LF, CRLF or CR line ends; blank
// lines skipped). `features` F32 {k}: the k non-label columns in header
// order, every value a number. `label` I64: either every label an integer
// >= 0 (used as the class id) or none a number (class names, ids 0, 1, ... in
// first-seen order over the whole file; `classes` receives the names in id
// order); a column mixing both is an error. Each part parses the whole file
// (the label ids and the errors are the file's), then keeps its rows.
struct CsvOptions {
  std::string label;
  char delimiter = ',';
};
bool ReadCsv(const std::string& path, const CsvOptions& opt, const ReadPart& part, Table* out, std::string* error,
             std::vector<std::string>* classes = nullptr);

// Image transforms on the `image` column (U8 or F32, per-row shape {H, W} or
// {C, H, W}). Row r's randomness is a function of (seed, r) only.
// RandomCrop zero-pads each side by `padding`, then cuts a size x size window.
bool RandomCrop(Table* t, uint64_t size, uint64_t padding, uint64_t seed, std::string* error);
// Reverses each image's columns with probability p.
bool HorizontalFlip(Table* t, double p, uint64_t seed, std::string* error);

// A relative data path, resolved against the directory of the plan's source
// file (as imports are); absolute paths and plans without one are unchanged.
std::string ResolveDataPath(const plan::v1::Plan* plan, const std::string& path);

// Folds the identity of every file a stage's arguments name (its resolved
// path, size and modification time, or "missing") into the stage's content
// hash, and every changed hash into the hashes of the stages downstream, so
// that the cache never returns outputs computed from a file that has since
// changed. Stages that name no files keep their hash.
void FingerprintInputFiles(plan::v1::Plan* plan);

// The registered operators (`idx`, `cifar10`, `csv`, `random_crop`, `horizontal_flip`).
bool IdxSource(TaskContext& ctx, const plan::v1::Call& c, Table* out, OpError* err);
bool Cifar10Source(TaskContext& ctx, const plan::v1::Call& c, Table* out, OpError* err);
bool CsvSource(TaskContext& ctx, const plan::v1::Call& c, Table* out, OpError* err);
bool RandomCropTransform(TaskContext& ctx, const plan::v1::Call& c, Table* t, OpError* err);
bool HorizontalFlipTransform(TaskContext& ctx, const plan::v1::Call& c, Table* t, OpError* err);

}  // namespace mlp::rt::ops
