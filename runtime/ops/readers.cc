// Dataset readers and image transforms (see readers.h).
#include "runtime/ops/readers.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <unordered_map>

#include "compiler/plan/lower.h"
#include "runtime/ops/op_util.h"
#include "runtime/ops/registry.h"

namespace mlp::rt::ops {

namespace {

namespace pb = plan::v1;

constexpr uint64_t kChunk = 1u << 20;           // read granularity, between cancellation polls

bool Cancelled(const ReadPart& p) { return p.cancelled && p.cancelled(); }

bool Fail(std::string* error, std::string msg) {
  *error = std::move(msg);
  return false;
}

std::string Q(const std::string& s) { return "`" + s + "`"; }

std::string Hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

bool TooBig(uint64_t rows, uint64_t row_bytes, std::string* error) {
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(rows, row_bytes, &bytes) || bytes > kMaxTaskBytes) {
    return !Fail(error, "this task would read " + std::to_string(rows) + " rows of " + std::to_string(row_bytes) +
                            " bytes, more than the 4 GiB one task may hold; raise `shards`");
  }
  return false;
}

// ---- byte streams: a raw or gzip file, read forward, with offsets in the (decompressed) data

class Stream {
 public:
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    if (gz_) gzclose(gz_);
  }

  bool Open(const std::string& path, std::string* error) {
    path_ = path;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return Fail(error, "cannot open " + Q(path) + ": " + std::strerror(errno));
    struct stat st {};
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
      std::fclose(f);
      return Fail(error, "cannot read " + Q(path) + ": not a regular file");
    }
    file_size_ = static_cast<uint64_t>(st.st_size);
    uint8_t magic[2] = {0, 0};
    gzip_ = std::fread(magic, 1, 2, f) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (gzip_ && file_size_ >= 18) {  // the smallest gzip member: 10-byte header, 8-byte trailer
      uint8_t tail[4];
      if (std::fseek(f, -4, SEEK_END) == 0 && std::fread(tail, 1, 4, f) == 4) {
        isize_ = uint32_t{tail[0]} | (uint32_t{tail[1]} << 8) | (uint32_t{tail[2]} << 16) | (uint32_t{tail[3]} << 24);
        has_isize_ = true;
      }
    }
    std::fclose(f);
    return Reopen(error);
  }

  const std::string& path() const { return path_; }
  uint64_t offset() const { return offset_; }
  // "byte N" or "byte N of the decompressed data".
  std::string At(uint64_t off) const {
    return "byte " + std::to_string(off) + (gzip_ ? " of the decompressed data" : "");
  }

  // The size of the (decompressed) data, told by its expected size: a raw
  // file's size is known; a gzip file whose trailer (size mod 2^32) agrees is
  // taken at its word, any other is decompressed to the end to count.
  bool DataSize(uint64_t expected, const ReadPart& part, uint64_t* size, std::string* error) {
    if (!gzip_) {
      *size = file_size_;
      return true;
    }
    if (has_isize_ && isize_ == static_cast<uint32_t>(expected)) {
      *size = expected;
      return true;
    }
    Stream counter;
    if (!counter.Open(path_, error)) return false;
    std::vector<uint8_t> buf(kChunk);
    uint64_t total = 0;
    while (true) {
      if (Cancelled(part)) return Fail(error, "cancelled");
      uint64_t got = 0;
      if (!counter.ReadSome(buf.data(), buf.size(), &got, error)) {
        *error += "; the header promises " + std::to_string(expected) + " bytes";
        return false;
      }
      if (got == 0) break;
      total += got;
    }
    *size = total;
    return true;
  }

  // Exactly n bytes into dst (null: skip them); `what` names them for the error.
  bool Read(uint8_t* dst, uint64_t n, const std::string& what, const ReadPart& part, std::string* error) {
    std::vector<uint8_t> scratch;
    if (!dst && !gzip_) {
      if (SeekRaw(n) < 0) return Fail(error, "cannot seek in " + Q(path_));
      if (offset_ + n > file_size_) return Short(what, file_size_, error);
      offset_ += n;
      return true;
    }
    if (!dst) scratch.resize(static_cast<size_t>(std::min<uint64_t>(n, kChunk)));
    uint64_t start = offset_, done = 0;
    while (done < n) {
      if (Cancelled(part)) return Fail(error, "cancelled");
      uint64_t want = std::min<uint64_t>(n - done, kChunk), got = 0;
      uint8_t* to = dst ? dst + done : scratch.data();
      if (!ReadSome(to, want, &got, error)) return false;
      if (got == 0) return Short(what, start + done, error);
      done += got;
    }
    return true;
  }

  // After the last byte of the data: a gzip member's checksum is verified
  // only when its end is read, so read on to it.
  bool ExpectEnd(std::string* error) {
    if (!gzip_) return true;
    uint8_t extra = 0;
    uint64_t got = 0;
    if (!ReadSome(&extra, 1, &got, error)) return false;
    if (got != 0) return Fail(error, Q(path_) + ": unexpected bytes after " + At(offset_ - 1) + ", expected the end");
    return true;
  }

 private:
  bool Reopen(std::string* error) {
    if (gz_) gzclose(gz_);
    offset_ = 0;
    gz_ = gzopen(path_.c_str(), "rb");
    if (!gz_) return Fail(error, "cannot open " + Q(path_) + ": " + std::strerror(errno ? errno : ENOMEM));
    gzbuffer(gz_, 128 * 1024);
    return true;
  }

  int64_t SeekRaw(uint64_t n) {
    // Raw files only (zlib seeks them with lseek): n bytes forward.
    return gzseek(gz_, static_cast<z_off_t>(offset_ + n), SEEK_SET);
  }

  // Up to n bytes; 0 at the end of the data. A corrupt or cut gzip stream is an error.
  bool ReadSome(uint8_t* dst, uint64_t n, uint64_t* got, std::string* error) {
    int r = gzread(gz_, dst, static_cast<unsigned>(std::min<uint64_t>(n, kChunk)));
    if (r <= 0) {
      // zlib hands out what it could decompress first, then reports the error.
      int code = Z_OK;
      const char* msg = gzerror(gz_, &code);
      std::string text = msg && *msg ? msg : "error";
      if (text.starts_with(path_ + ": ")) text.erase(0, path_.size() + 2);  // zlib prefixes the path
      std::string zmsg = " (zlib: " + text + ")";
      if (code == Z_BUF_ERROR)
        return Fail(error, Q(path_) + ": the gzip stream is cut short after " + At(offset_) + zmsg);
      if (code != Z_OK || r < 0) return Fail(error, Q(path_) + ": corrupt gzip data after " + At(offset_) + zmsg);
    }
    *got = static_cast<uint64_t>(r);
    offset_ += *got;
    return true;
  }

  bool Short(const std::string& what, uint64_t end, std::string* error) {
    return Fail(error, Q(path_) + ": truncated: the data ends at " + At(end) + ", expected " + what);
  }

  std::string path_;
  gzFile gz_ = nullptr;
  bool gzip_ = false;
  bool has_isize_ = false;
  uint32_t isize_ = 0;
  uint64_t file_size_ = 0;
  uint64_t offset_ = 0;
};

// ---- IDX

struct IdxHeader {
  uint64_t count = 0, rows = 0, cols = 0;  // rows/cols: images only
  uint64_t header_bytes = 0;
};

bool ReadIdxHeader(Stream& s, bool images, IdxHeader* h, const ReadPart& part, std::string* error) {
  const uint32_t want = images ? 0x00000803u : 0x00000801u;
  const std::string kind =
      images ? "an IDX image file: unsigned bytes, 3 dimensions" : "an IDX label file: unsigned bytes, 1 dimension";
  h->header_bytes = images ? 16 : 8;
  uint8_t buf[16];
  if (!s.Read(buf, 4, "a 4-byte magic number (" + kind + ")", part, error)) return false;
  uint32_t magic = BigEndian32(buf);
  if (magic != want) {
    std::string hint;
    if (magic == (images ? 0x00000801u : 0x00000803u))
      hint = images ? " (this is a label file)" : " (this is an image file)";
    return Fail(error, Q(s.path()) + ": bad magic number " + Hex32(magic) + " at " + s.At(0) + hint + ", expected " +
                           Hex32(want) + " (" + kind + ")");
  }
  uint64_t dims = images ? 3 : 1;
  if (!s.Read(buf + 4, 4 * dims, "the header's " + std::to_string(dims) + " big-endian 32-bit sizes", part, error)) {
    return false;
  }
  h->count = BigEndian32(buf + 4);
  if (images) {
    h->rows = BigEndian32(buf + 8);
    h->cols = BigEndian32(buf + 12);
    if (h->rows == 0 || h->cols == 0) {
      return Fail(error, Q(s.path()) + ": the header at " + s.At(8) + " gives images of " + std::to_string(h->rows) +
                             "x" + std::to_string(h->cols) + " pixels, expected both sizes above 0");
    }
  }
  return true;
}

// The (decompressed) data must hold exactly what the header promises.
bool CheckIdxSize(Stream& s, const IdxHeader& h, uint64_t per, const char* noun, const ReadPart& part,
                  std::string* error) {
  if (per > (std::numeric_limits<uint64_t>::max() - h.header_bytes) / std::max<uint64_t>(h.count, 1)) {
    return Fail(error, Q(s.path()) + ": the header promises " + std::to_string(h.count) + " " + noun + " of " +
                           std::to_string(per) + " bytes, more than a file can hold");
  }
  uint64_t expected = h.header_bytes + h.count * per;
  uint64_t size = 0;
  if (!s.DataSize(expected, part, &size, error)) return false;
  if (size < expected) {
    return Fail(error, Q(s.path()) + ": truncated: the header promises " + std::to_string(h.count) + " " + noun + " (" +
                           std::to_string(expected) + " bytes), but the data ends at " + s.At(size));
  }
  if (size > expected) {
    return Fail(error, Q(s.path()) + ": " + std::to_string(size - expected) + " unexpected bytes after " +
                           s.At(expected) + ", where the header's " + std::to_string(h.count) + " " + noun + " end");
  }
  return true;
}

// ---- CSV

std::string_view Trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

bool ParseNumber(std::string_view v, double* out) {
  v = Trim(v);
  if (v.size() > 1 && v[0] == '+' && v[1] != '-') v.remove_prefix(1);
  if (v.empty()) return false;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), *out);
  return ec == std::errc() && p == v.data() + v.size();
}

// Splits RFC 4180 records: fields separated by `delim`, records by LF, CRLF
// or CR; a field in double quotes may hold delimiters, line breaks and `""`.
class CsvScanner {
 public:
  CsvScanner(std::string_view text, char delim, const std::string& path) : s_(text), delim_(delim), path_(path) {
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") p_ = 3;  // a UTF-8 byte order mark
  }
  uint64_t line() const { return record_line_; }

  // The next non-blank record into `fields`; false at the end (error empty) or on an error.
  bool Next(std::vector<std::string>* fields, size_t* count, std::string* error) {
    error->clear();
    while (p_ < s_.size() && (s_[p_] == '\n' || s_[p_] == '\r')) EndLine();
    if (p_ >= s_.size()) return false;
    record_line_ = line_;
    *count = 0;
    while (true) {
      if (*count == fields->size()) fields->emplace_back();
      std::string& f = (*fields)[(*count)++];
      f.clear();
      if (p_ < s_.size() && s_[p_] == '"') {
        uint64_t open_line = line_;
        ++p_;
        while (true) {
          if (p_ >= s_.size()) {
            return Fail(error, path_ + ":" + std::to_string(open_line) + ": field " + std::to_string(*count) +
                                   ": the quote opened here is never closed");
          }
          char c = s_[p_];
          if (c == '"') {
            if (p_ + 1 < s_.size() && s_[p_ + 1] == '"') {
              f.push_back('"');
              p_ += 2;
              continue;
            }
            ++p_;
            break;
          }
          if (c == '\n' || (c == '\r' && (p_ + 1 >= s_.size() || s_[p_ + 1] != '\n'))) ++line_;
          f.push_back(c);
          ++p_;
        }
        if (p_ < s_.size() && s_[p_] != delim_ && s_[p_] != '\n' && s_[p_] != '\r') {
          return Fail(error, path_ + ":" + std::to_string(line_) + ": field " + std::to_string(*count) + ": `" +
                                 std::string(1, s_[p_]) +
                                 "` after a closing quote, expected the delimiter or the end of the line");
        }
      } else {
        size_t b = p_;
        while (p_ < s_.size() && s_[p_] != delim_ && s_[p_] != '\n' && s_[p_] != '\r') ++p_;
        f.assign(s_.substr(b, p_ - b));
      }
      if (p_ < s_.size() && s_[p_] == delim_) {
        ++p_;
        continue;
      }
      if (p_ < s_.size()) EndLine();
      return true;
    }
  }

 private:
  void EndLine() {
    if (s_[p_] == '\r' && p_ + 1 < s_.size() && s_[p_ + 1] == '\n') ++p_;
    ++p_;
    ++line_;
  }

  std::string_view s_;
  char delim_;
  const std::string& path_;
  size_t p_ = 0;
  uint64_t line_ = 1, record_line_ = 1;
};

bool ReadWholeFile(const std::string& path, std::string* out, std::string* error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Fail(error, "cannot open " + Q(path) + ": " + std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> hold(f, std::fclose);
  struct stat st {};
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
    return Fail(error, "cannot read " + Q(path) + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxTaskBytes) {
    return Fail(error,
                Q(path) + ": " + std::to_string(st.st_size) + " bytes, more than the 4 GiB a CSV source may read");
  }
  out->resize(static_cast<size_t>(st.st_size));
  size_t got = out->empty() ? 0 : std::fread(out->data(), 1, out->size(), f);
  if (got != out->size()) return Fail(error, "cannot read " + Q(path) + ": " + std::strerror(errno ? errno : EIO));
  return true;
}

// ---- image transforms

struct ImageDims {
  uint64_t c = 1, h = 0, w = 0;
};

bool ImageColumn(Table* t, Column** col, ImageDims* d, std::string* error) {
  *col = t->Find("image");
  if (!*col) {
    std::string names;
    for (const auto& c : t->columns) names += (names.empty() ? "" : ", ") + Q(c.name);
    return Fail(error, "expected an `image` column, but the rows have " + (names.empty() ? "no columns" : names));
  }
  const Column& c = **col;
  if (c.dtype != DType::U8 && c.dtype != DType::F32) {
    return Fail(error, "the `image` column is " + std::string(DTypeName(c.dtype)) + ", expected u8 or f32");
  }
  if (c.shape.size() == 2) {
    *d = {1, c.shape[0], c.shape[1]};
  } else if (c.shape.size() == 3) {
    *d = {c.shape[0], c.shape[1], c.shape[2]};
  } else {
    return Fail(error,
                "`image` rows have " + std::to_string(c.shape.size()) + " dimensions, expected {H, W} or {C, H, W}");
  }
  return true;
}

template <class T>
void CropRows(const Column& in, Column* out, const ImageDims& d, uint64_t size, uint64_t pad, uint64_t seed) {
  auto src = in.values<T>();
  auto dst = out->mutable_values<T>();
  uint64_t span_y = d.h + 2 * pad - size + 1, span_x = d.w + 2 * pad - size + 1;
  for (uint64_t r = 0; r < in.rows(); ++r) {
    uint64_t h = Mix(seed, r);
    // Window origin in padded coordinates; (oy - pad, ox - pad) in the image.
    int64_t oy = static_cast<int64_t>(Mix(h, 1) % span_y) - static_cast<int64_t>(pad);
    int64_t ox = static_cast<int64_t>(Mix(h, 2) % span_x) - static_cast<int64_t>(pad);
    int64_t x0 = std::max<int64_t>(0, -ox), x1 = std::min<int64_t>(size, static_cast<int64_t>(d.w) - ox);
    for (uint64_t ch = 0; ch < d.c; ++ch) {
      const T* plane = src.data() + (r * d.c + ch) * d.h * d.w;
      T* to = dst.data() + (r * d.c + ch) * size * size;
      for (int64_t y = 0; y < static_cast<int64_t>(size); ++y) {
        int64_t sy = oy + y;
        if (sy < 0 || sy >= static_cast<int64_t>(d.h) || x0 >= x1) continue;  // stays zero
        std::memcpy(to + y * size + x0, plane + sy * d.w + (ox + x0), static_cast<size_t>(x1 - x0) * sizeof(T));
      }
    }
  }
}

template <class T>
void FlipRows(Column* col, const ImageDims& d, double p, uint64_t seed) {
  auto v = col->mutable_values<T>();
  for (uint64_t r = 0; r < col->rows(); ++r) {
    double u = static_cast<double>(Mix(seed, r) >> 11) * 0x1.0p-53;
    if (!(u < p)) continue;
    for (uint64_t line = 0; line < d.c * d.h; ++line) {
      T* a = v.data() + (r * d.c * d.h + line) * d.w;
      std::reverse(a, a + d.w);
    }
  }
}

// ---- operator arguments

bool OpFail(OpError* err, const pb::Call& c, const std::string& msg) {
  err->message = "`" + c.op() + "`: " + msg;
  err->retryable = false;
  return false;
}

bool StrArg(const pb::Call& c, std::string_view name, std::string* out, OpError* err) {
  const pb::Value* v = Arg(c, name);
  if (v && v->kind_case() == pb::Value::kPathValue) {
    *out = v->path_value();
    return true;
  }
  if (v && v->kind_case() == pb::Value::kStringValue) {
    *out = v->string_value();
    return true;
  }
  return OpFail(err, c, "argument `" + std::string(name) + "` is missing or not a string");
}

bool IntArg(const pb::Call& c, std::string_view name, int64_t def, int64_t* out, OpError* err) {
  const pb::Value* v = Arg(c, name);
  if (!v) {
    *out = def;
    return true;
  }
  if (v->kind_case() != pb::Value::kIntValue || v->int_value() < 0) {
    return OpFail(err, c, "argument `" + std::string(name) + "` is not an int >= 0");
  }
  *out = v->int_value();
  return true;
}

// A path argument, resolved; `shown` is how errors name it.
bool PathArg(TaskContext& ctx, const pb::Call& c, std::string_view name, std::string* path, OpError* err) {
  std::string given;
  if (!StrArg(c, name, &given, err)) return false;
  if (given.empty()) return OpFail(err, c, "argument `" + std::string(name) + "` is an empty path");
  *path = ResolveDataPath(ctx.plan, given);
  return true;
}

ReadPart PartOf(TaskContext& ctx) { return ReadPart{ctx.index, ctx.count, ctx.cancelled}; }

// The random stream of an augmentation: the pipeline seed, the stage, which
// transform of the stage this is, and the task; rows then index into it.
uint64_t AugmentSeed(const TaskContext& ctx, const pb::Call& c) {
  uint64_t seed = 0;
  if (ctx.plan) {
    for (const auto& s : ctx.plan->settings()) {
      if (s.name() == "seed" && s.value().kind_case() == pb::Value::kIntValue)
        seed = static_cast<uint64_t>(s.value().int_value());
    }
  }
  uint64_t position = 0;
  std::string stage;
  if (ctx.node) {
    stage = ctx.node->name();
    for (const auto& a : ctx.node->args()) {
      if (a.name() != "transform") continue;
      if (a.value().kind_case() == pb::Value::kList) {
        for (int k = 0; k < a.value().list().items_size(); ++k) {
          if (&a.value().list().items(k).call() == &c) position = static_cast<uint64_t>(k);
        }
      }
    }
  }
  return Mix(Mix(Mix(Mix(seed, HashStr(stage)), HashStr(c.op())), position), ctx.index);
}

}  // namespace

// ---- readers

bool ReadIdx(const std::string& images, const std::string& labels, uint64_t limit, const ReadPart& part, Table* out,
             std::string* error) {
  Stream im, lb;
  IdxHeader ih, lh;
  if (!im.Open(images, error) || !ReadIdxHeader(im, true, &ih, part, error)) return false;
  if (!lb.Open(labels, error) || !ReadIdxHeader(lb, false, &lh, part, error)) return false;
  if (ih.count != lh.count) {
    return Fail(error, Q(labels) + " holds " + std::to_string(lh.count) + " labels (header at " + lb.At(4) + "), but " +
                           Q(images) + " holds " + std::to_string(ih.count) + " images; expected one label per image");
  }
  uint64_t per = ih.rows * ih.cols;  // each < 2^32: no overflow
  if (!CheckIdxSize(im, ih, per, "images", part, error) || !CheckIdxSize(lb, lh, 1, "labels", part, error))
    return false;
  uint64_t n = limit > 0 ? std::min(limit, ih.count) : ih.count;
  uint64_t b = SliceBegin(n, part.index, part.count), e = SliceBegin(n, part.index + 1ull, part.count);
  if (TooBig(e - b, per, error)) return false;
  Column image = Column::Make("image", DType::U8, {ih.rows, ih.cols}, e - b);
  Column label = Column::Make("label", DType::I64, {}, e - b);
  if (!im.Read(nullptr, b * per, "image data up to image " + std::to_string(b), part, error)) return false;
  if (!im.Read(image.mutable_bytes(), (e - b) * per,
               std::to_string((e - b) * per) + " bytes of images " + std::to_string(b) + ".." + std::to_string(e - 1),
               part, error)) {
    return false;
  }
  if (e == ih.count && !im.ExpectEnd(error)) return false;
  std::vector<uint8_t> raw(e - b);
  if (!lb.Read(nullptr, b, "labels up to label " + std::to_string(b), part, error)) return false;
  if (!lb.Read(raw.data(), e - b, std::to_string(e - b) + " labels from label " + std::to_string(b), part, error)) {
    return false;
  }
  if (e == lh.count && !lb.ExpectEnd(error)) return false;
  auto lv = label.mutable_values<int64_t>();
  for (uint64_t k = 0; k < e - b; ++k) lv[k] = raw[k];
  out->columns.clear();
  out->columns.push_back(std::move(image));
  out->columns.push_back(std::move(label));
  return true;
}

bool ReadCifar10(const std::string& dir, bool train, uint64_t limit, const ReadPart& part, Table* out,
                 std::string* error) {
  namespace fs = std::filesystem;
  constexpr uint64_t kImage = 3 * 32 * 32, kRecord = kImage + 1;
  std::vector<std::string> names;
  if (train) {
    for (int k = 1; k <= 5; ++k) names.push_back("data_batch_" + std::to_string(k) + ".bin");
  } else {
    names.push_back("test_batch.bin");
  }
  // The archive unpacks into `cifar-10-batches-bin`; accept the directory above it too.
  fs::path base(dir);
  std::error_code ec;
  if (!fs::exists(base / names[0], ec) && fs::exists(base / "cifar-10-batches-bin" / names[0], ec)) {
    base /= "cifar-10-batches-bin";
  }
  struct Batch {
    std::string path;
    uint64_t records = 0;
  };
  std::vector<Batch> batches;
  uint64_t total = 0;
  for (const auto& name : names) {
    std::string path = (base / name).string();
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return Fail(error, "cannot open " + Q(path) + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return Fail(error, "cannot read " + Q(path) + ": not a regular file");
    uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size == 0) return Fail(error, Q(path) + ": the file is empty, expected 3073-byte records");
    if (size % kRecord != 0) {
      return Fail(error, Q(path) + ": truncated: the record at byte " + std::to_string(size / kRecord * kRecord) +
                             " has " + std::to_string(size % kRecord) +
                             " bytes, expected 3073 (1 label byte and 3072 image bytes)");
    }
    batches.push_back({path, size / kRecord});
    total += size / kRecord;
  }
  uint64_t n = limit > 0 ? std::min(limit, total) : total;
  uint64_t b = SliceBegin(n, part.index, part.count), e = SliceBegin(n, part.index + 1ull, part.count);
  if (TooBig(e - b, kRecord, error)) return false;
  Column image = Column::Make("image", DType::U8, {3, 32, 32}, e - b);
  Column label = Column::Make("label", DType::I64, {}, e - b);
  uint8_t* iv = image.mutable_bytes();
  auto lv = label.mutable_values<int64_t>();
  std::vector<uint8_t> buf;
  uint64_t first = 0, row = 0;  // first: global index of the batch's first record
  for (const auto& batch : batches) {
    uint64_t lo = std::max(b, first), hi = std::min(e, first + batch.records);
    first += batch.records;
    if (lo >= hi) continue;
    std::FILE* f = std::fopen(batch.path.c_str(), "rb");
    if (!f) return Fail(error, "cannot open " + Q(batch.path) + ": " + std::strerror(errno));
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> hold(f, std::fclose);
    uint64_t rec = lo - (first - batch.records);  // record index within the file
    if (fseeko(f, static_cast<off_t>(rec * kRecord), SEEK_SET) != 0) {
      return Fail(error, "cannot seek in " + Q(batch.path) + ": " + std::strerror(errno));
    }
    uint64_t todo = hi - lo;
    while (todo > 0) {
      if (Cancelled(part)) return Fail(error, "cancelled");
      uint64_t k = std::min<uint64_t>(todo, 256);
      buf.resize(k * kRecord);
      if (std::fread(buf.data(), 1, buf.size(), f) != buf.size()) {
        return Fail(error, Q(batch.path) + ": truncated while reading the record at byte " +
                               std::to_string(rec * kRecord) + " (the file changed while it was read?)");
      }
      for (uint64_t j = 0; j < k; ++j, ++rec, ++row) {
        const uint8_t* r = buf.data() + j * kRecord;
        if (r[0] > 9) {
          return Fail(error, Q(batch.path) + ": label " + std::to_string(r[0]) + " at byte " +
                                 std::to_string(rec * kRecord) + " (record " + std::to_string(rec) +
                                 "), expected a class in 0..9");
        }
        lv[row] = r[0];
        std::memcpy(iv + row * kImage, r + 1, kImage);
      }
      todo -= k;
    }
  }
  out->columns.clear();
  out->columns.push_back(std::move(image));
  out->columns.push_back(std::move(label));
  return true;
}

bool ReadCsv(const std::string& path, const CsvOptions& opt, const ReadPart& part, Table* out, std::string* error,
             std::vector<std::string>* classes) {
  if (opt.delimiter == '"' || opt.delimiter == '\n' || opt.delimiter == '\r') {
    return Fail(error, "the delimiter cannot be a quote or a line break");
  }
  std::string text;
  if (!ReadWholeFile(path, &text, error)) return false;
  CsvScanner scan(text, opt.delimiter, path);
  std::vector<std::string> fields;
  size_t width = 0;
  if (!scan.Next(&fields, &width, error)) {
    if (error->empty()) *error = Q(path) + ": the file is empty, expected a header row";
    return false;
  }
  std::vector<std::string> header(fields.begin(), fields.begin() + static_cast<std::ptrdiff_t>(width));
  size_t label_at = width;
  for (size_t k = 0; k < width; ++k) {
    header[k] = std::string(Trim(header[k]));
    if (header[k] != opt.label) continue;
    if (label_at != width)
      return Fail(error, path + ":1: the label column " + Q(opt.label) + " appears twice in the header");
    label_at = k;
  }
  if (label_at == width) {
    std::string names;
    for (const auto& h : header) names += (names.empty() ? "" : ", ") + Q(h);
    return Fail(error, path + ":1: no column " + Q(opt.label) + " for the label in the header (" + names + ")");
  }
  const uint64_t k_features = width - 1;
  if (k_features == 0)
    return Fail(error, path + ":1: the header has only the label column, expected feature columns too");

  std::vector<float> features;
  std::vector<int64_t> numeric, ids;  // each label read as a class id, and as a class name
  std::unordered_map<std::string, int64_t> class_id;
  std::vector<std::string> class_names;
  // The first label written as a number and the first one not, each with its line: a column holds one kind.
  std::string first_number, first_name;
  uint64_t n = 0;
  size_t count = 0;
  while (scan.Next(&fields, &count, error)) {
    if ((n & 4095) == 0 && Cancelled(part)) return Fail(error, "cancelled");
    std::string at = path + ":" + std::to_string(scan.line()) + ": ";
    if (count != width) {
      return Fail(error, at + "expected " + std::to_string(width) + " fields (as in the header), found " +
                             std::to_string(count));
    }
    for (size_t k = 0; k < width; ++k) {
      if (k == label_at) continue;
      double v = 0;
      if (!ParseNumber(fields[k], &v)) {
        std::string shown = fields[k].size() > 40 ? fields[k].substr(0, 40) + "..." : fields[k];
        return Fail(error, at + "column " + Q(header[k]) + ": " +
                               (Trim(fields[k]).empty() ? std::string("an empty value") : Q(shown)) +
                               " is not a number; every column but the label must be numeric");
      }
      float f = static_cast<float>(v);
      if (std::isinf(f) && !std::isinf(v)) {
        return Fail(error, at + "column " + Q(header[k]) + ": " + Q(fields[k]) + " is out of the f32 range");
      }
      features.push_back(f);
    }
    std::string name(Trim(fields[label_at]));
    if (name.empty()) return Fail(error, at + "the label " + Q(opt.label) + " is empty");
    double v = 0;
    if (ParseNumber(name, &v)) {
      if (!(v >= 0 && v < 9.2e18 && std::floor(v) == v)) {
        return Fail(error, at + "label " + Q(name) + " is not a class id: expected an integer >= 0");
      }
      if (first_number.empty()) first_number = at + Q(name);
      numeric.push_back(static_cast<int64_t>(v));
    } else {
      if (first_name.empty()) first_name = at + Q(name);
      auto [it, added] = class_id.try_emplace(name, static_cast<int64_t>(class_names.size()));
      if (added) class_names.push_back(name);
      ids.push_back(it->second);
    }
    if (!first_number.empty() && !first_name.empty()) {
      return Fail(error, "the label column " + Q(opt.label) + " mixes class ids and class names (" + first_number +
                             " is a number, " + first_name + " is not); expected one kind");
    }
    ++n;
  }
  if (!error->empty()) return false;
  bool by_name = !first_name.empty();
  const std::vector<int64_t>& labels = by_name ? ids : numeric;
  if (classes) *classes = by_name ? class_names : std::vector<std::string>{};

  uint64_t b = SliceBegin(n, part.index, part.count), e = SliceBegin(n, part.index + 1ull, part.count);
  Column x = Column::Make("features", DType::F32, {k_features}, e - b);
  Column y = Column::Make("label", DType::I64, {}, e - b);
  if (e > b) {
    std::memcpy(x.mutable_bytes(), features.data() + b * k_features, (e - b) * k_features * sizeof(float));
    std::memcpy(y.mutable_bytes(), labels.data() + b, (e - b) * sizeof(int64_t));
  }
  out->columns.clear();
  out->columns.push_back(std::move(x));
  out->columns.push_back(std::move(y));
  return true;
}

// ---- transforms

bool RandomCrop(Table* t, uint64_t size, uint64_t padding, uint64_t seed, std::string* error) {
  Column* col = nullptr;
  ImageDims d;
  if (!ImageColumn(t, &col, &d, error)) return false;
  if (size == 0 || padding > (1u << 20) || d.h + 2 * padding < size || d.w + 2 * padding < size) {
    return Fail(error, "a " + std::to_string(size) + "x" + std::to_string(size) + " crop of " + std::to_string(d.h) +
                           "x" + std::to_string(d.w) + " images padded by " + std::to_string(padding) +
                           " does not fit");
  }
  std::vector<uint64_t> shape =
      col->shape.size() == 2 ? std::vector<uint64_t>{size, size} : std::vector<uint64_t>{d.c, size, size};
  if (TooBig(col->rows(), d.c * size * size * DTypeSize(col->dtype), error)) return false;
  Column out = Column::Make(col->name, col->dtype, shape, col->rows());
  if (col->dtype == DType::U8) {
    CropRows<uint8_t>(*col, &out, d, size, padding, seed);
  } else {
    CropRows<float>(*col, &out, d, size, padding, seed);
  }
  *col = std::move(out);
  return true;
}

bool HorizontalFlip(Table* t, double p, uint64_t seed, std::string* error) {
  Column* col = nullptr;
  ImageDims d;
  if (!ImageColumn(t, &col, &d, error)) return false;
  if (!(p >= 0 && p <= 1)) return Fail(error, "`p` is " + std::to_string(p) + ", expected [0, 1]");
  if (p == 0 || col->rows() == 0) return true;
  if (col->dtype == DType::U8) {
    FlipRows<uint8_t>(col, d, p, seed);
  } else {
    FlipRows<float>(col, d, p, seed);
  }
  return true;
}

std::string ResolveDataPath(const plan::v1::Plan* plan, const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p(path);
  if (path.empty() || p.is_absolute() || !plan || plan->source_file().empty()) return path;
  fs::path dir = fs::path(plan->source_file()).parent_path();
  if (dir.empty()) return path;
  return (dir / p).lexically_normal().string();
}

namespace {

void CollectPaths(const plan::v1::Value& v, std::vector<std::string>* out) {
  switch (v.kind_case()) {
    case plan::v1::Value::kPathValue: out->push_back(v.path_value()); break;
    case plan::v1::Value::kList:
    case plan::v1::Value::kMap:
      for (const auto& x : v.list().items()) CollectPaths(x, out);
      for (const auto& e : v.list().entries()) CollectPaths(e.value(), out);
      for (const auto& x : v.map().items()) CollectPaths(x, out);
      for (const auto& e : v.map().entries()) CollectPaths(e.value(), out);
      break;
    case plan::v1::Value::kCall:
      for (const auto& a : v.call().args()) CollectPaths(a.value(), out);
      break;
    default: break;
  }
}

}  // namespace

void FingerprintInputFiles(plan::v1::Plan* plan) {
  std::map<std::string, std::string> changed;  // stage -> its new hash
  for (auto& node : *plan->mutable_nodes()) {
    std::vector<std::string> paths;
    for (const auto& a : node.args()) CollectPaths(a.value(), &paths);
    std::string extra;
    for (const auto& p : paths) {
      std::string resolved = ResolveDataPath(plan, p);
      struct stat st {};
      extra += "file " + resolved + " ";
      if (::stat(resolved.c_str(), &st) == 0) {
        extra += std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
                 std::to_string(st.st_mtim.tv_nsec) + "\n";
      } else {
        extra += "missing\n";
      }
    }
    for (const auto& d : node.deps()) {  // every stage this one waits for, inputs included
      auto it = changed.find(d);
      if (it != changed.end()) extra += "upstream " + d + " " + it->second + "\n";
    }
    if (extra.empty()) continue;
    node.set_content_hash(Sha256Hex(node.content_hash() + "\n" + extra));
    changed[node.name()] = node.content_hash();
  }
}

// ---- operators

bool IdxSource(TaskContext& ctx, const pb::Call& c, Table* out, OpError* err) {
  std::string images, labels, why;
  int64_t limit = 0;
  if (!PathArg(ctx, c, "images", &images, err) || !PathArg(ctx, c, "labels", &labels, err) ||
      !IntArg(c, "limit", 0, &limit, err)) {
    return false;
  }
  if (!ReadIdx(images, labels, static_cast<uint64_t>(limit), PartOf(ctx), out, &why)) return OpFail(err, c, why);
  return true;
}

bool Cifar10Source(TaskContext& ctx, const pb::Call& c, Table* out, OpError* err) {
  std::string dir, why;
  int64_t limit = 0;
  bool train = true;
  if (!PathArg(ctx, c, "dir", &dir, err) || !IntArg(c, "limit", 0, &limit, err)) return false;
  if (const pb::Value* v = Arg(c, "train")) {
    if (v->kind_case() != pb::Value::kBoolValue) return OpFail(err, c, "argument `train` is not a bool");
    train = v->bool_value();
  }
  if (!ReadCifar10(dir, train, static_cast<uint64_t>(limit), PartOf(ctx), out, &why)) return OpFail(err, c, why);
  return true;
}

bool CsvSource(TaskContext& ctx, const pb::Call& c, Table* out, OpError* err) {
  std::string path, delim = ",", why;
  CsvOptions opt;
  if (!PathArg(ctx, c, "path", &path, err) || !StrArg(c, "label", &opt.label, err)) return false;
  if (Arg(c, "delimiter") && !StrArg(c, "delimiter", &delim, err)) return false;
  if (delim.size() != 1) return OpFail(err, c, "`delimiter` is " + Q(delim) + ", expected one character (byte)");
  opt.delimiter = delim[0];
  std::vector<std::string> classes;
  if (!ReadCsv(path, opt, PartOf(ctx), out, &why, &classes)) return OpFail(err, c, why);
  if (!classes.empty() && ctx.log && ctx.index == 0) {
    std::string line = "csv: " + std::to_string(classes.size()) + " label classes, in first-seen order:";
    for (size_t k = 0; k < classes.size() && k < 20; ++k) line += " " + std::to_string(k) + "=" + classes[k];
    if (classes.size() > 20) line += " ...";
    ctx.log(line);
  }
  return true;
}

bool RandomCropTransform(TaskContext& ctx, const pb::Call& c, Table* t, OpError* err) {
  int64_t size = 0, padding = 0;
  std::string why;
  if (!Arg(c, "size")) return OpFail(err, c, "argument `size` is missing");
  if (!IntArg(c, "size", 0, &size, err) || !IntArg(c, "padding", 0, &padding, err)) return false;
  if (!RandomCrop(t, static_cast<uint64_t>(size), static_cast<uint64_t>(padding), AugmentSeed(ctx, c), &why)) {
    return OpFail(err, c, why);
  }
  return true;
}

bool HorizontalFlipTransform(TaskContext& ctx, const pb::Call& c, Table* t, OpError* err) {
  double p = 0.5;
  if (const pb::Value* v = Arg(c, "p")) {
    if (v->kind_case() == pb::Value::kFloatValue) {
      p = v->float_value();
    } else if (v->kind_case() == pb::Value::kIntValue) {
      p = static_cast<double>(v->int_value());
    } else {
      return OpFail(err, c, "argument `p` is not a number");
    }
  }
  std::string why;
  if (!HorizontalFlip(t, p, AugmentSeed(ctx, c), &why)) {
    return OpFail(err, c, why);
  }
  return true;
}

}  // namespace mlp::rt::ops
