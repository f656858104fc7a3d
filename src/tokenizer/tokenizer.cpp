#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <queue>
#include <sstream>

#include "core/json.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::tokenizer {
namespace {

struct CodeRange {
  uint32_t lo, hi;
};
#include "tokenizer/unicode_tables.inc"

template <size_t N>
bool in_ranges(const CodeRange (&r)[N], uint32_t cp) {
  size_t lo = 0, hi = N;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cp < r[mid].lo)
      hi = mid;
    else if (cp > r[mid].hi)
      lo = mid + 1;
    else
      return true;
  }
  return false;
}

bool is_letter(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in_ranges(kLetters, cp);
}
bool is_number(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in_ranges(kNumbers, cp);
}
// Unicode White_Space (what the regex's \s matches).
bool is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// One code point of the text: value (0xFFFD for an invalid byte) and its byte span.
struct Cp {
  uint32_t cp;
  uint32_t at, len;
};

// Length of the valid UTF-8 sequence at s[i], or 0 if the bytes there are not one.
size_t valid_sequence(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t len = c >= 0xC2 && c <= 0xDF   ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
  if (len == 0 || i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    unsigned char d = b(i + k);
    unsigned char lo = 0x80, hi = 0xBF;
    if (k == 1 && c == 0xE0) lo = 0xA0;
    if (k == 1 && c == 0xED) hi = 0x9F;
    if (k == 1 && c == 0xF0) lo = 0x90;
    if (k == 1 && c == 0xF4) hi = 0x8F;
    if (d < lo || d > hi) return 0;
  }
  return len;
}

uint32_t decode_cp(std::string_view s, size_t i, size_t len) {
  auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[k])); };
  if (len == 1) return b(i);
  if (len == 2) return ((b(i) & 0x1F) << 6) | (b(i + 1) & 0x3F);
  if (len == 3) return ((b(i) & 0x0F) << 12) | ((b(i + 1) & 0x3F) << 6) | (b(i + 2) & 0x3F);
  return ((b(i) & 0x07) << 18) | ((b(i + 1) & 0x3F) << 12) | ((b(i + 2) & 0x3F) << 6) |
         (b(i + 3) & 0x3F);
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::vector<Cp> code_points(std::string_view s) {
  std::vector<Cp> cps;
  cps.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t len = valid_sequence(s, i);
    if (len == 0) {
      cps.push_back({0xFFFD, static_cast<uint32_t>(i), 1});
      ++i;
    } else {
      cps.push_back({decode_cp(s, i, len), static_cast<uint32_t>(i), static_cast<uint32_t>(len)});
      i += len;
    }
  }
  return cps;
}

// GPT-2's pre-tokenizer:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Calls f(begin, end) with byte offsets of each piece.
template <typename F>
void pre_tokenize(std::string_view s, F&& f) {
  std::vector<Cp> c = code_points(s);
  size_t n = c.size();
  auto cp = [&](size_t i) { return c[i].cp; };
  auto other = [&](size_t i) { return !is_space(cp(i)) && !is_letter(cp(i)) && !is_number(cp(i)); };
  size_t i = 0;
  while (i < n) {
    size_t end = i;
    if (cp(i) == '\'' && i + 1 < n) {
      uint32_t a = cp(i + 1), b = i + 2 < n ? cp(i + 2) : 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd')
        end = i + 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        end = i + 3;
    }
    if (end == i) {
      size_t j = cp(i) == ' ' && i + 1 < n ? i + 1 : i;
      if (is_letter(cp(j))) {
        end = j;
        while (end < n && is_letter(cp(end))) ++end;
      } else if (is_number(cp(j))) {
        end = j;
        while (end < n && is_number(cp(end))) ++end;
      } else if (other(j)) {
        end = j;
        while (end < n && other(end)) ++end;
      }
    }
    if (end == i) {  // whitespace: a run, leaving its last char to the next piece if one follows
      end = i;
      while (end < n && is_space(cp(end))) ++end;
      if (end < n && end - i > 1) --end;
    }
    f(c[i].at, end < n ? c[end].at : static_cast<uint32_t>(s.size()));
    i = end;
  }
}

// GPT-2's reversible byte <-> printable code point map.
struct ByteMap {
  uint32_t to_cp[256];
  std::unordered_map<uint32_t, unsigned char> to_byte;
  ByteMap() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_cp[b] = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
      to_byte[to_cp[b]] = static_cast<unsigned char>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// Text from a file, quoted for a message: control bytes (a NUL would cut the message short)
// escaped, long text shortened.
std::string shown(const std::string& text) {
  std::string q = json::quote(text.size() > 80 ? text.substr(0, 80) : text);
  return text.size() > 80 ? q.substr(0, q.size() - 1) + "...\"" : q;
}

[[noreturn]] void bad(const std::string& file, const std::string& msg) {
  throw Error(ErrorCode::kParseError, "tokenizer file '" + file + "': " + msg);
}

std::string read_text(const std::string& path) {
  return platform::read_text_file(path);  // regular files only: not a FIFO or /dev/zero
}

uint64_t pair_key(int64_t a, int64_t b) {
  return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b);
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::string tokenizer_json, vocab_json, merges_txt;
  if (fs::is_directory(path)) {
    if (fs::exists(path + "/tokenizer.json")) {
      tokenizer_json = path + "/tokenizer.json";
    } else if (fs::exists(path + "/vocab.json") && fs::exists(path + "/merges.txt")) {
      vocab_json = path + "/vocab.json";
      merges_txt = path + "/merges.txt";
    } else {
      throw Error(ErrorCode::kIoError, "folder '" + path +
                                           "' has neither tokenizer.json nor vocab.json + "
                                           "merges.txt (a GPT-2 tokenizer from Hugging Face)");
    }
  } else if (fs::exists(path)) {
    tokenizer_json = path;
  } else {
    throw Error(ErrorCode::kIoError, "tokenizer '" + path + "' does not exist");
  }

  Tokenizer t;
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<std::string> merge_at;     // where each merge is written, for messages
  std::map<std::string, int64_t> vocab;  // mapped token string -> id
  if (!tokenizer_json.empty()) {
    t.source_ = tokenizer_json;
    json::Value root = json::parse(read_text(tokenizer_json), tokenizer_json);
    const json::Value* model = json::find(root, "model");
    if (!model || !model->is_object()) bad(tokenizer_json, "no \"model\" object");
    const json::Value* type = json::find(*model, "type");
    if (!type || !type->is_string() || type->get<std::string>() != "BPE")
      bad(tokenizer_json, "model type is not BPE (gptrt reads GPT-2 byte-level BPE tokenizers)");
    const json::Value* v = json::find(*model, "vocab");
    const json::Value* m = json::find(*model, "merges");
    if (!v || !v->is_object() || !m || !m->is_array())
      bad(tokenizer_json, "model has no \"vocab\" object or \"merges\" array");
    for (const auto& [tok, id] : v->items()) {
      std::optional<int64_t> n = json::as_int64(id);
      if (!n) bad(tokenizer_json, "vocab entry " + shown(tok) + " is not an integer id");
      vocab[tok] = *n;
    }
    for (const json::Value& e : *m) {
      if (e.is_string()) {
        const std::string& text = e.get_ref<const std::string&>();
        size_t sp = text.find(' ');
        if (sp == std::string::npos) bad(tokenizer_json, "merge " + shown(text) + " is not 'a b'");
        merges.emplace_back(text.substr(0, sp), text.substr(sp + 1));
        merge_at.push_back("'" + tokenizer_json + "': merge " + std::to_string(merges.size() - 1));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
        merge_at.push_back("'" + tokenizer_json + "': merge " + std::to_string(merges.size() - 1));
      } else {
        bad(tokenizer_json, "a merge is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
    if (const json::Value* added = json::find(root, "added_tokens"); added && added->is_array()) {
      for (const json::Value& a : *added) {
        const json::Value* content = json::find(a, "content");
        const json::Value* id = json::find(a, "id");
        const int64_t n = id ? json::as_int64(*id).value_or(-1) : -1;
        if (!content || !content->is_string() || n < 0)
          bad(tokenizer_json, "an added token has no content or id");
        if (content->get_ref<const std::string&>().empty())
          bad(tokenizer_json, "added token " + std::to_string(n) +
                                  " has empty content; every added token needs its text");
        t.specials_.emplace_back(content->get<std::string>(), n);
        vocab[content->get<std::string>()] = n;
      }
    }
  } else {
    t.source_ = vocab_json;
    json::Value v = json::parse(read_text(vocab_json), vocab_json);
    if (!v.is_object()) bad(vocab_json, "is not a JSON object of token -> id");
    for (const auto& [tok, id] : v.items()) {
      std::optional<int64_t> n = json::as_int64(id);
      if (!n) bad(vocab_json, "entry " + shown(tok) + " is not an integer id");
      vocab[tok] = *n;
    }
    std::istringstream lines(read_text(merges_txt));
    std::string line;
    for (int64_t number = 1; std::getline(lines, line); ++number) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line.rfind("#version", 0) == 0) continue;
      size_t sp = line.find(' ');
      if (sp == std::string::npos)
        bad(merges_txt, "line " + std::to_string(number) + " " + shown(line) + " is not 'a b'");
      merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
      merge_at.push_back("'" + merges_txt + "' line " + std::to_string(number));
    }
    if (vocab.count("<|endoftext|>"))
      t.specials_.emplace_back("<|endoftext|>", vocab["<|endoftext|>"]);
  }

  int64_t size = 0;
  for (const auto& [tok, id] : vocab) {
    if (id < 0 || id > 10'000'000)
      bad(t.source_,
          "token " + shown(tok) + " has id " + std::to_string(id) + ", expected 0 .. 10000000");
    size = std::max(size, id + 1);
  }
  t.tokens_.assign(static_cast<size_t>(size), "");
  t.is_special_.assign(static_cast<size_t>(size), 0);
  const ByteMap& bm = byte_map();
  for (const auto& [tok, id] : vocab) {
    const int64_t this_id = id;  // (clang 14 cannot capture a structured binding)
    bool special = std::any_of(t.specials_.begin(), t.specials_.end(),
                               [&](const auto& s) { return s.second == this_id; });
    std::string bytes;
    if (special) {
      bytes = tok;
      t.is_special_[static_cast<size_t>(id)] = 1;
    } else {
      for (const Cp& c : code_points(tok)) {
        auto it = bm.to_byte.find(c.cp);
        if (it == bm.to_byte.end())
          bad(t.source_, "token " + shown(tok) + " is not in GPT-2's byte-level alphabet");
        bytes += static_cast<char>(it->second);
      }
    }
    t.tokens_[static_cast<size_t>(id)] = bytes;
    t.byte_token_[tok] = id;
  }
  for (int b = 0; b < 256; ++b) {
    std::string sym;
    append_utf8(sym, bm.to_cp[b]);
    auto it = t.byte_token_.find(sym);
    if (it == t.byte_token_.end())
      bad(t.source_, "the vocabulary lacks the symbol of byte " + std::to_string(b));
    t.byte_id_[b] = static_cast<int32_t>(it->second);
  }
  for (size_t r = 0; r < merges.size(); ++r) {
    auto a = t.byte_token_.find(merges[r].first);
    auto b = t.byte_token_.find(merges[r].second);
    auto ab = t.byte_token_.find(merges[r].first + merges[r].second);
    if (a == t.byte_token_.end() || b == t.byte_token_.end() || ab == t.byte_token_.end())
      throw Error(ErrorCode::kParseError,
                  "tokenizer " + merge_at[r] + ": merge " + shown(merges[r].first) + " + " +
                      shown(merges[r].second) + " names tokens missing from the vocabulary ('" +
                      t.source_ + "')");
    t.merges_.emplace(pair_key(a->second, b->second),
                      std::make_pair(static_cast<int32_t>(r), static_cast<int32_t>(ab->second)));
  }
  t.cache_ = std::make_shared<Cache>();
  return t;
}

// The lowest-ranked adjacent pair merges first, the leftmost of equal ranks first, until none
// merges: with the symbols in a linked list and the candidate pairs in a heap (a pair whose
// symbols changed since it was pushed is skipped), O(n log n) in the word's length where
// rescanning every pair after each merge was quadratic (a megabyte of letters took a minute).
// A merge makes a token whose own merges rank later (BPE's order), so equal-ranked pairs still
// merge left to right as in a sweep.
void Tokenizer::encode_word(std::string_view word, std::vector<int64_t>& out) const {
  const int32_t n = static_cast<int32_t>(word.size());
  std::vector<int32_t> sym(static_cast<size_t>(n)), prev(static_cast<size_t>(n)),
      next(static_cast<size_t>(n));
  std::vector<char> alive(static_cast<size_t>(n), 1);
  for (int32_t i = 0; i < n; ++i) {
    sym[static_cast<size_t>(i)] =
        byte_id_[static_cast<unsigned char>(word[static_cast<size_t>(i)])];
    prev[static_cast<size_t>(i)] = i - 1;
    next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  struct Pair {
    int32_t rank, left, left_sym, right_sym, merged;
    bool operator>(const Pair& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Pair, std::vector<Pair>, std::greater<Pair>> heap;
  auto push = [&](int32_t i) {
    const int32_t j = next[static_cast<size_t>(i)];
    if (j < 0) return;
    const int32_t a = sym[static_cast<size_t>(i)], b = sym[static_cast<size_t>(j)];
    auto it = merges_.find(pair_key(a, b));
    if (it != merges_.end()) heap.push({it->second.first, i, a, b, it->second.second});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Pair p = heap.top();
    heap.pop();
    const size_t i = static_cast<size_t>(p.left);
    const int32_t j = next[i];
    if (!alive[i] || j < 0 || sym[i] != p.left_sym || sym[static_cast<size_t>(j)] != p.right_sym)
      continue;  // stale: one of its symbols merged since
    sym[i] = p.merged;
    alive[static_cast<size_t>(j)] = 0;
    next[i] = next[static_cast<size_t>(j)];
    if (next[i] >= 0) prev[static_cast<size_t>(next[i])] = p.left;
    if (prev[i] >= 0) push(prev[i]);
    push(p.left);
  }
  for (int32_t i = 0; i < n; ++i)
    if (alive[static_cast<size_t>(i)]) out.push_back(sym[static_cast<size_t>(i)]);
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<int64_t>& out) const {
  pre_tokenize(text, [&](uint32_t b, uint32_t e) {
    std::string_view word = text.substr(b, e - b);
    if (word.size() > 64) {
      encode_word(word, out);
      return;
    }
    std::lock_guard<std::mutex> lock(cache_->mu);
    auto it = cache_->words.find(std::string(word));
    if (it == cache_->words.end()) {
      std::vector<int64_t> ids;
      encode_word(word, ids);
      if (cache_->words.size() > 200'000) cache_->words.clear();
      it = cache_->words.emplace(std::string(word), std::move(ids)).first;
    }
    out.insert(out.end(), it->second.begin(), it->second.end());
  });
}

std::vector<int64_t> Tokenizer::encode(std::string_view text) const {
  if (text.size() > kMaxTextBytes)
    throw Error(ErrorCode::kResourceLimit,
                "text of " + std::to_string(text.size()) + " bytes is longer than the " +
                    std::to_string(kMaxTextBytes >> 20) +
                    " MiB gptrt tokenizes at once; split it (no GPT-2 context holds that much)");
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best = std::string_view::npos;
    const std::pair<std::string, int64_t>* hit = nullptr;
    for (const auto& s : specials_) {
      size_t at = text.find(s.first, pos);
      if (at < best) {
        best = at;
        hit = &s;
      }
    }
    encode_ordinary(
        text.substr(pos, best == std::string_view::npos ? std::string_view::npos : best - pos),
        out);
    if (!hit) break;
    out.push_back(hit->second);
    pos = best + hit->first.size();
  }
  return out;
}

std::string Tokenizer::token_bytes(int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw Error(ErrorCode::kInvalidArgument, "token id " + std::to_string(id) +
                                                 " is outside the tokenizer's vocabulary [0, " +
                                                 std::to_string(vocab_size()) + ")");
  return tokens_[static_cast<size_t>(id)];
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string bytes;
  for (int64_t id : ids) bytes += token_bytes(id);
  return repair_utf8(bytes);
}

int64_t Tokenizer::special_id(const std::string& content) const {
  for (const auto& s : specials_)
    if (s.first == content) return s.second;
  return -1;
}

std::string repair_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t len = valid_sequence(s, i);
    if (len > 0) {
      out.append(s.substr(i, len));
      i += len;
      continue;
    }
    // One U+FFFD per maximal invalid subpart (Python's errors="replace").
    size_t j = i + 1;
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t want = c >= 0xC2 && c <= 0xDF   ? 2
                  : c >= 0xE0 && c <= 0xEF ? 3
                  : c >= 0xF0 && c <= 0xF4 ? 4
                                           : 1;
    while (j < s.size() && j < i + want) {
      unsigned char d = static_cast<unsigned char>(s[j]);
      unsigned char lo = 0x80, hi = 0xBF;
      if (j == i + 1 && c == 0xE0) lo = 0xA0;
      if (j == i + 1 && c == 0xED) hi = 0x9F;
      if (j == i + 1 && c == 0xF0) lo = 0x90;
      if (j == i + 1 && c == 0xF4) hi = 0x8F;
      if (d < lo || d > hi) break;
      ++j;
    }
    out += "\xEF\xBF\xBD";
    i = j;
  }
  return out;
}

size_t complete_utf8_prefix(std::string_view s) {
  // An incomplete character starts within the last 3 bytes: a lead byte whose continuation
  // bytes so far are valid but too few.
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    size_t i = s.size() - back;
    unsigned char c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    size_t want = c >= 0xC2 && c <= 0xDF   ? 2
                  : c >= 0xE0 && c <= 0xEF ? 3
                  : c >= 0xF0 && c <= 0xF4 ? 4
                                           : 1;
    if (want > back) {
      std::string padded(s.substr(i));
      // Valid so far if completing it with continuation bytes could make it valid.
      // (A lead byte alone can always still be completed.)
      unsigned char d = back > 1 ? static_cast<unsigned char>(s[i + 1]) : 0;
      bool ok = back == 1 || (!(c == 0xE0 && d < 0xA0) && !(c == 0xED && d > 0x9F) &&
                              !(c == 0xF0 && d < 0x90) && !(c == 0xF4 && d > 0x8F));
      return ok ? i : s.size();
    }
    return s.size();
  }
  return s.size();
}

std::string StreamDecoder::push(int64_t id) {
  pending_ += tok_.token_bytes(id);
  size_t n = complete_utf8_prefix(pending_);
  std::string out = repair_utf8(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = repair_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace gptrt::tokenizer
