// GPT-2 byte-level BPE, read from Hugging Face files (tokenizer.json, or vocab.json +
// merges.txt): the GPT-2 pre-tokenizer regex, byte-to-symbol mapping, ranked merges, special
// tokens such as <|endoftext|>; encode, decode, and a streaming decoder that never splits a UTF-8
// character.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gptrt::tokenizer {

class Tokenizer {
 public:
  /// Reads `path`: a tokenizer.json file, or a folder holding tokenizer.json or vocab.json and
  /// merges.txt. Throws gptrt::Error naming the file and what is wrong.
  static Tokenizer load(const std::string& path);

  /// The longest text encode() takes (64 MiB): longer is a resource-limit error.
  static constexpr size_t kMaxTextBytes = size_t{64} << 20;
  /// Token ids of `text` (UTF-8; invalid bytes are encoded as the bytes they are).
  std::vector<int64_t> encode(std::string_view text) const;
  /// Text of `ids`; bytes that do not form valid UTF-8 become U+FFFD, as in Hugging Face.
  /// Throws for an id outside the vocabulary.
  std::string decode(const std::vector<int64_t>& ids) const;
  /// Raw bytes of one token (no UTF-8 repair).
  std::string token_bytes(int64_t id) const;
  /// The token of one byte (byte-level BPE's base tokens).
  int64_t byte_token(uint8_t byte) const { return byte_id_[byte]; }

  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }
  /// Id of a special token such as "<|endoftext|>", or -1.
  int64_t special_id(const std::string& content) const;
  /// Where the vocabulary came from.
  const std::string& source() const { return source_; }

 private:
  void encode_word(std::string_view word, std::vector<int64_t>& out) const;
  void encode_ordinary(std::string_view text, std::vector<int64_t>& out) const;

  std::string source_;
  std::vector<std::string> tokens_;                      // id -> raw bytes
  std::unordered_map<std::string, int64_t> byte_token_;  // symbol string (mapped bytes) -> id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a, b) -> (rank, merged)
  int32_t byte_id_[256] = {};                                         // byte -> its token id
  std::vector<std::pair<std::string, int64_t>> specials_;             // content -> id
  std::vector<char> is_special_;
  struct Cache {  // pieces already encoded (shared by copies; safe across threads)
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int64_t>> words;
  };
  std::shared_ptr<Cache> cache_;
};

/// Decodes tokens one at a time, holding back the bytes of an incomplete UTF-8 character.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  /// Text that is complete after adding `id` (possibly empty).
  std::string push(int64_t id);
  /// Whatever is held back, with invalid bytes as U+FFFD.
  std::string finish();

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

/// `bytes` with every invalid UTF-8 sequence replaced by U+FFFD (as Python's errors="replace").
std::string repair_utf8(std::string_view bytes);
/// Length of the longest prefix of `bytes` that does not end inside a UTF-8 character that
/// could still be completed.
size_t complete_utf8_prefix(std::string_view bytes);

}  // namespace gptrt::tokenizer
