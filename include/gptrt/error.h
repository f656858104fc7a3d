// Error type of the gptrt library. The library never exits or aborts on bad input: it throws
// gptrt::Error with a message that says what, where, expected vs found, and what to do.
#pragma once

#include <stdexcept>
#include <string>

namespace gptrt {

/// Broad class of an error, for callers that react differently to each.
enum class ErrorCode {
  kInvalidArgument,  // a caller-supplied value (flag, shape, token id) is out of range
  kParseError,       // a file is malformed or truncated
  kUnsupported,      // valid input that gptrt cannot handle (op, dtype, opset)
  kShapeError,       // shapes disagree or fall outside every optimization profile
  kIoError,          // a file cannot be opened, read or written
  kEngineMismatch,   // an engine file is for another format version, target or CPU
  kResourceLimit,    // the work would exceed a stated limit (memory budget, input size)
  kInternal,         // a bug in gptrt
};

/// Name of an ErrorCode, e.g. "parse error".
const char* error_code_name(ErrorCode code);

/// The one exception type gptrt throws.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  /// Class of the error.
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace gptrt
