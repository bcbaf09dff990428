// Columnar tables: one dataset shard, serialized into one byte blob (an object
// in the object store). Parsing validates everything, because the bytes may
// come from another process, and does not copy column data: columns view the
// blob (the caller keeps it alive, or passes an owner to keep).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mlp::rt::ops {

enum class DType : uint8_t { U8 = 1, I32 = 2, I64 = 3, F32 = 4, F64 = 5, Bool = 6 };

size_t DTypeSize(DType t);
std::string_view DTypeName(DType t);
bool IsFloat(DType t);

// One column: a name, an element type, a per-row shape ({} for scalars,
// {28, 28} for images) and rows * prod(shape) little-endian elements. Storage
// is shared: copies and slices are cheap, writes copy first when shared.
// Bool elements are bytes holding 0 or 1.
class Column {
 public:
  std::string name;
  DType dtype = DType::F32;
  std::vector<uint64_t> shape;

  Column() = default;
  // Zero-filled owned storage. Returns an empty column if the size overflows.
  static Column Make(std::string name, DType dtype, std::vector<uint64_t> shape, uint64_t rows);
  // A view of `data` (rows * row_bytes() bytes); `keep` (may be null) is held
  // for as long as the view lives.
  static Column View(std::string name, DType dtype, std::vector<uint64_t> shape, uint64_t rows,
                     const uint8_t* data, std::shared_ptr<const void> keep);

  uint64_t rows() const { return rows_; }
  uint64_t row_elems() const;  // prod(shape)
  uint64_t row_bytes() const { return row_elems() * DTypeSize(dtype); }
  uint64_t elems() const { return rows_ * row_elems(); }
  std::span<const uint8_t> bytes() const { return {ptr_, size_}; }
  // Copies the data first unless this column is its only user.
  uint8_t* mutable_bytes();

  // Typed access; T must have the element size of `dtype` (bool: uint8_t).
  template <class T>
  std::span<const T> values() const {
    if (sizeof(T) != DTypeSize(dtype)) return {};
    return {reinterpret_cast<const T*>(ptr_), static_cast<size_t>(elems())};
  }
  template <class T>
  std::span<T> mutable_values() {
    if (sizeof(T) != DTypeSize(dtype)) return {};
    return {reinterpret_cast<T*>(mutable_bytes()), static_cast<size_t>(elems())};
  }

  // Rows [begin, end), sharing storage; clamps to the column.
  Column Slice(uint64_t begin, uint64_t end) const;

 private:
  uint64_t rows_ = 0;
  const uint8_t* ptr_ = nullptr;
  size_t size_ = 0;
  std::shared_ptr<std::vector<uint8_t>> owned_;  // set when the bytes are ours
  std::shared_ptr<const void> keep_;             // an external owner of a view
};

struct Table {
  std::vector<Column> columns;
  uint64_t rows() const { return columns.empty() ? 0 : columns[0].rows(); }
  const Column* Find(std::string_view name) const;
  Column* Find(std::string_view name);
};

// Checks that names are unique and non-empty and all columns have one row count.
bool Validate(const Table& t, std::string* error);

// Format (little-endian): a header (magic "MLPTABLE", version, column count,
// row count, total size), one descriptor per column (dtype, shape, data offset
// and size, name), then each column's data at a 64-byte aligned offset.
std::string Serialize(const Table& t);
// Validates magic, version, counts, sizes, overflow, alignment and overlap.
// Columns view `bytes` (copied only where the blob is misaligned for their
// element type); `keep`, when given, is held by every view.
bool Parse(std::string_view bytes, Table* out, std::string* error, std::shared_ptr<const void> keep = nullptr);
// Whether `bytes` start like a serialized table (its magic): an output that
// does not is some other kind of object (a model archive), not a corrupt table.
bool IsSerializedTable(std::string_view bytes);

// Rows of every table in order. The tables must have the same columns (names,
// dtypes, shapes, in order); a table with no columns and no rows is skipped.
bool Concat(std::span<const Table> tables, Table* out, std::string* error);
// Rows [begin, end) (clamped), sharing storage.
Table Slice(const Table& t, uint64_t begin, uint64_t end);
// The rows picked by `index` (each < t.rows()), in that order, copied.
Table Gather(const Table& t, std::span<const uint64_t> index);

}  // namespace mlp::rt::ops
