// Tables: storage, the blob format and its validating parser.
#include "runtime/ops/table.h"

#include <bit>
#include <cstring>
#include <set>

namespace mlp::rt::ops {

static_assert(std::endian::native == std::endian::little, "the table format is little-endian; add byte swapping");

namespace {

constexpr char kMagic[8] = {'M', 'L', 'P', 'T', 'A', 'B', 'L', 'E'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 40;
constexpr size_t kDescFixed = 24;  // dtype, ndim, reserved, name_len, offset, size
constexpr size_t kAlign = 64;
// Limits that keep a hostile header from asking for absurd work.
constexpr uint32_t kMaxColumns = 65536;
constexpr uint32_t kMaxDims = 8;
constexpr uint32_t kMaxName = 1024;

bool MulOverflow(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }
uint64_t AlignUp(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

bool ValidDType(uint8_t d) { return d >= 1 && d <= 6; }

// Bytes needed for `rows` rows of this type and shape; false on overflow.
bool DataSize(DType t, const std::vector<uint64_t>& shape, uint64_t rows, uint64_t* out) {
  uint64_t n = DTypeSize(t);
  for (uint64_t d : shape) {
    if (MulOverflow(n, d, &n)) return false;
  }
  return !MulOverflow(n, rows, out);
}

void Put32(std::string& s, uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }
void Put64(std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }

// A bounds-checked reader over the blob.
struct Reader {
  std::string_view b;
  size_t pos = 0;
  bool Need(size_t n) const { return n <= b.size() && pos <= b.size() - n; }
  bool U8(uint8_t* v) {
    if (!Need(1)) return false;
    *v = static_cast<uint8_t>(b[pos++]);
    return true;
  }
  bool U16(uint16_t* v) { return Raw(v, 2); }
  bool U32(uint32_t* v) { return Raw(v, 4); }
  bool U64(uint64_t* v) { return Raw(v, 8); }
  bool Raw(void* v, size_t n) {
    if (!Need(n)) return false;
    std::memcpy(v, b.data() + pos, n);
    pos += n;
    return true;
  }
};

bool Fail(std::string* error, std::string msg) {
  if (error) *error = "invalid table: " + std::move(msg);
  return false;
}

}  // namespace

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::U8:
    case DType::Bool: return 1;
    case DType::I32:
    case DType::F32: return 4;
    case DType::I64:
    case DType::F64: return 8;
  }
  return 1;
}

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::U8: return "u8";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::Bool: return "bool";
  }
  return "?";
}

bool IsFloat(DType t) { return t == DType::F32 || t == DType::F64; }

Column Column::Make(std::string name, DType dtype, std::vector<uint64_t> shape, uint64_t rows) {
  Column c;
  c.name = std::move(name);
  c.dtype = dtype;
  c.shape = std::move(shape);
  uint64_t size = 0;
  if (!DataSize(dtype, c.shape, rows, &size) || size > SIZE_MAX / 2) return c;
  c.rows_ = rows;
  c.owned_ = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(size));
  c.ptr_ = c.owned_->data();
  c.size_ = static_cast<size_t>(size);
  return c;
}

Column Column::View(std::string name, DType dtype, std::vector<uint64_t> shape, uint64_t rows, const uint8_t* data,
                    std::shared_ptr<const void> keep) {
  Column c;
  c.name = std::move(name);
  c.dtype = dtype;
  c.shape = std::move(shape);
  uint64_t size = 0;
  if (!DataSize(dtype, c.shape, rows, &size)) return c;
  c.rows_ = rows;
  c.ptr_ = data;
  c.size_ = static_cast<size_t>(size);
  c.keep_ = std::move(keep);
  return c;
}

uint64_t Column::row_elems() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;  // validated not to overflow when the column was made
  return n;
}

uint8_t* Column::mutable_bytes() {
  if (!owned_ || owned_.use_count() != 1) {
    auto copy = std::make_shared<std::vector<uint8_t>>(ptr_, ptr_ + size_);
    owned_ = std::move(copy);
    keep_.reset();
    ptr_ = owned_->data();
  }
  return const_cast<uint8_t*>(ptr_);
}

Column Column::Slice(uint64_t begin, uint64_t end) const {
  end = std::min(end, rows_);
  begin = std::min(begin, end);
  Column c = *this;
  uint64_t rb = row_bytes();
  c.rows_ = end - begin;
  c.ptr_ = ptr_ ? ptr_ + begin * rb : nullptr;
  c.size_ = static_cast<size_t>((end - begin) * rb);
  return c;
}

const Column* Table::Find(std::string_view name) const {
  for (const auto& c : columns) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Column* Table::Find(std::string_view name) {
  for (auto& c : columns) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

bool Validate(const Table& t, std::string* error) {
  std::set<std::string_view> names;
  for (const auto& c : t.columns) {
    if (c.name.empty()) return Fail(error, "a column has an empty name");
    if (!names.insert(c.name).second) return Fail(error, "column `" + c.name + "` appears twice");
    if (c.rows() != t.rows()) {
      return Fail(error, "column `" + c.name + "` has " + std::to_string(c.rows()) + " rows, but column `" +
                             t.columns[0].name + "` has " + std::to_string(t.rows()));
    }
    if (c.shape.size() > kMaxDims) return Fail(error, "column `" + c.name + "` has more than 8 dimensions");
  }
  return true;
}

std::string Serialize(const Table& t) {
  uint64_t desc_end = kHeaderSize;
  for (const auto& c : t.columns) {
    desc_end += kDescFixed + 8 * c.shape.size() + (c.name.size() + 7) / 8 * 8;
  }
  std::vector<uint64_t> offsets;
  uint64_t pos = AlignUp(desc_end);
  for (const auto& c : t.columns) {
    offsets.push_back(pos);
    pos = AlignUp(pos + c.bytes().size());
  }
  uint64_t total = t.columns.empty() ? desc_end : pos;
  std::string out;
  out.reserve(total);
  out.append(kMagic, 8);
  Put32(out, kVersion);
  Put32(out, static_cast<uint32_t>(t.columns.size()));
  Put64(out, t.rows());
  Put64(out, total);
  Put64(out, 0);
  for (size_t k = 0; k < t.columns.size(); ++k) {
    const Column& c = t.columns[k];
    out += static_cast<char>(c.dtype);
    out += static_cast<char>(c.shape.size());
    out.append(2, '\0');
    Put32(out, static_cast<uint32_t>(c.name.size()));
    Put64(out, offsets[k]);
    Put64(out, c.bytes().size());
    for (uint64_t d : c.shape) Put64(out, d);
    out += c.name;
    out.append((8 - c.name.size() % 8) % 8, '\0');
  }
  for (size_t k = 0; k < t.columns.size(); ++k) {
    out.resize(offsets[k], '\0');
    auto b = t.columns[k].bytes();
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  out.resize(total, '\0');
  return out;
}

bool IsSerializedTable(std::string_view bytes) {
  return bytes.size() >= 8 && std::memcmp(bytes.data(), kMagic, 8) == 0;
}

bool Parse(std::string_view bytes, Table* out, std::string* error, std::shared_ptr<const void> keep) {
  out->columns.clear();
  Reader r{bytes};
  char magic[8];
  if (!r.Raw(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) {
    return Fail(error, bytes.size() < 8 ? "shorter than the 8-byte magic" : "bad magic (not a serialized table)");
  }
  uint32_t version = 0, ncols = 0;
  uint64_t rows = 0, total = 0, reserved = 0;
  if (!r.U32(&version) || !r.U32(&ncols) || !r.U64(&rows) || !r.U64(&total) || !r.U64(&reserved)) {
    return Fail(error, "truncated header (" + std::to_string(bytes.size()) + " bytes)");
  }
  if (version != kVersion) {
    return Fail(error, "unsupported version " + std::to_string(version) + " (expected " + std::to_string(kVersion) + ")");
  }
  if (total != bytes.size()) {
    return Fail(error, "the header says " + std::to_string(total) + " bytes, but there are " +
                           std::to_string(bytes.size()) + " (truncated or padded)");
  }
  if (ncols > kMaxColumns) return Fail(error, "column count " + std::to_string(ncols) + " exceeds 65536");
  if (ncols == 0 && rows != 0) return Fail(error, "a table with no columns cannot have rows");
  struct Desc {
    DType dtype;
    std::vector<uint64_t> shape;
    std::string name;
    uint64_t offset, size;
  };
  std::vector<Desc> descs;
  descs.reserve(std::min<uint32_t>(ncols, 1024));
  std::set<std::string> names;
  for (uint32_t k = 0; k < ncols; ++k) {
    std::string which = "column " + std::to_string(k);
    uint8_t dtype = 0, ndim = 0;
    uint16_t pad = 0;
    uint32_t name_len = 0;
    Desc d;
    if (!r.U8(&dtype) || !r.U8(&ndim) || !r.U16(&pad) || !r.U32(&name_len) || !r.U64(&d.offset) ||
        !r.U64(&d.size)) {
      return Fail(error, "truncated descriptor of " + which);
    }
    if (!ValidDType(dtype)) return Fail(error, which + " has unknown dtype " + std::to_string(dtype));
    if (ndim > kMaxDims) return Fail(error, which + " has " + std::to_string(ndim) + " dimensions (at most 8)");
    if (name_len == 0 || name_len > kMaxName) {
      return Fail(error, which + " has a name of " + std::to_string(name_len) + " bytes (1 to 1024)");
    }
    d.dtype = static_cast<DType>(dtype);
    d.shape.resize(ndim);
    for (auto& dim : d.shape) {
      if (!r.U64(&dim)) return Fail(error, "truncated shape of " + which);
    }
    size_t padded = (name_len + 7) / 8 * 8;
    if (!r.Need(padded)) return Fail(error, "truncated name of " + which);
    d.name.assign(bytes.data() + r.pos, name_len);
    r.pos += padded;
    if (!names.insert(d.name).second) return Fail(error, "column name `" + d.name + "` appears twice");
    uint64_t want = 0;
    if (!DataSize(d.dtype, d.shape, rows, &want)) {
      return Fail(error, "column `" + d.name + "`: rows x shape x element size overflows");
    }
    if (want != d.size) {
      return Fail(error, "column `" + d.name + "` holds " + std::to_string(d.size) + " bytes, but " +
                             std::to_string(rows) + " rows of " + std::string(DTypeName(d.dtype)) + " need " +
                             std::to_string(want));
    }
    descs.push_back(std::move(d));
  }
  // Data regions: aligned, after the descriptors, in order, not overlapping, inside the blob.
  uint64_t floor = r.pos;
  for (const auto& d : descs) {
    if (d.offset % kAlign != 0) {
      return Fail(error, "column `" + d.name + "` data offset " + std::to_string(d.offset) + " is not 64-byte aligned");
    }
    if (d.offset < floor) {
      return Fail(error, "column `" + d.name + "` data at offset " + std::to_string(d.offset) +
                             " overlaps the descriptors or the previous column");
    }
    if (d.offset > bytes.size() || d.size > bytes.size() - d.offset) {
      return Fail(error, "column `" + d.name + "` data [" + std::to_string(d.offset) + ", +" + std::to_string(d.size) +
                             ") runs past the end of the " + std::to_string(bytes.size()) + "-byte blob");
    }
    floor = d.offset + d.size;
  }
  for (auto& d : descs) {
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data()) + d.offset;
    if (d.dtype == DType::Bool) {
      for (uint64_t k = 0; k < d.size; ++k) {
        if (p[k] > 1) return Fail(error, "bool column `" + d.name + "` holds byte " + std::to_string(p[k]));
      }
    }
    Column c = Column::View(std::move(d.name), d.dtype, std::move(d.shape), rows, p, keep);
    // A blob that is not itself aligned would give misaligned typed views: copy those.
    if (reinterpret_cast<uintptr_t>(p) % DTypeSize(c.dtype) != 0) c.mutable_bytes();
    out->columns.push_back(std::move(c));
  }
  return true;
}

bool Concat(std::span<const Table> tables, Table* out, std::string* error) {
  out->columns.clear();
  const Table* first = nullptr;
  uint64_t rows = 0;
  for (const auto& t : tables) {
    if (t.columns.empty()) continue;
    if (!first) first = &t;
    bool same = t.columns.size() == first->columns.size();
    for (size_t k = 0; same && k < t.columns.size(); ++k) {
      const Column &a = first->columns[k], &b = t.columns[k];
      same = a.name == b.name && a.dtype == b.dtype && a.shape == b.shape;
    }
    if (!same) {
      if (error) *error = "cannot concatenate tables with different columns (names, types or shapes differ)";
      return false;
    }
    if (__builtin_add_overflow(rows, t.rows(), &rows)) {
      if (error) *error = "cannot concatenate: the row count overflows";
      return false;
    }
  }
  if (!first) return true;
  if (&tables[0] == first && tables.size() == 1) {
    *out = *first;
    return true;
  }
  for (const auto& proto : first->columns) {
    Column c = Column::Make(proto.name, proto.dtype, proto.shape, rows);
    if (c.rows() != rows) {
      if (error) *error = "cannot concatenate: column `" + proto.name + "` would be too large";
      return false;
    }
    out->columns.push_back(std::move(c));
  }
  for (size_t k = 0; k < first->columns.size(); ++k) {
    uint8_t* dst = out->columns[k].mutable_bytes();
    for (const auto& t : tables) {
      if (t.columns.empty()) continue;
      auto b = t.columns[k].bytes();
      if (!b.empty()) std::memcpy(dst, b.data(), b.size());
      dst += b.size();
    }
  }
  return true;
}

Table Slice(const Table& t, uint64_t begin, uint64_t end) {
  Table out;
  for (const auto& c : t.columns) out.columns.push_back(c.Slice(begin, end));
  return out;
}

Table Gather(const Table& t, std::span<const uint64_t> index) {
  Table out;
  for (const auto& c : t.columns) {
    Column g = Column::Make(c.name, c.dtype, c.shape, index.size());
    uint64_t rb = c.row_bytes();
    uint8_t* dst = g.mutable_bytes();
    const uint8_t* src = c.bytes().data();
    for (size_t k = 0; k < index.size(); ++k) {
      if (rb) std::memcpy(dst + k * rb, src + index[k] * rb, rb);
    }
    out.columns.push_back(std::move(g));
  }
  return out;
}

}  // namespace mlp::rt::ops
