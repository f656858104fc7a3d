// `gptrt tokenize`: GPT-2 BPE token ids of a text (or the text of ids with --decode).
#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>

#include "common.h"
#include "core/json.h"
#include "gptrt/error.h"
#include "tokenizer/tokenizer.h"

namespace gptrt::cli {

int cmd_tokenize(const std::vector<std::string>& argv) {
  std::vector<FlagSpec> specs = {
      {"tokenizer", true,
       "tokenizer.json, or a folder with tokenizer.json or vocab.json + merges.txt"},
      {"text", true, "text to encode (default: standard input)"},
      {"decode", true, "comma-separated ids to decode instead"},
      {"format", true, "json (default: {\"ids\": [...]} or {\"text\": ...}) or text"},
      {"help", false, "show this help"},
  };
  Args args = Args::parse(specs, argv, "tokenize");
  if (args.has("help")) {
    print_help(
        "usage: gptrt tokenize --tokenizer DIR|FILE [--text T | < file] [--format json|text]",
        specs);
    return 0;
  }
  if (!args.has("tokenizer"))
    throw Error(ErrorCode::kInvalidArgument,
                "gptrt tokenize: --tokenizer=DIR|FILE is required (a Hugging Face GPT-2 "
                "tokenizer: tokenizer.json or vocab.json + merges.txt)");
  std::string format = args.get("format", "json");
  if (format != "json" && format != "text")
    throw Error(ErrorCode::kInvalidArgument,
                "--format must be json or text, found '" + format + "'");
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(args.get("tokenizer"));
  if (args.has("decode")) {
    std::vector<int64_t> ids = parse_id_list(args.get("decode"), "--decode");
    std::string text = tok.decode(ids);
    if (format == "json")
      std::printf("{\"text\": %s}\n", json::quote(text).c_str());
    else
      std::printf("%s\n", text.c_str());
    return 0;
  }
  std::string text;
  if (args.has("text")) {
    text = args.get("text");
  } else {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::vector<int64_t> ids = tok.encode(text);
  std::string list;
  for (size_t i = 0; i < ids.size(); ++i) list += (i ? ", " : "") + std::to_string(ids[i]);
  if (format == "json")
    std::printf("{\"ids\": [%s]}\n", list.c_str());
  else
    std::printf("%s\n", list.c_str());
  return 0;
}

}  // namespace gptrt::cli
