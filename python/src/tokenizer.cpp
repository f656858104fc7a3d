// GPT-2's byte-level BPE tokenizer (tokenizer.json, or vocab.json + merges.txt).
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "tokenizer/tokenizer.h"

namespace gptrt::python {

void bind_tokenizer(nb::module_& m) {
  using tokenizer::Tokenizer;
  nb::class_<Tokenizer>(m, "Tokenizer", "GPT-2's byte-level BPE, read from Hugging Face files.")
      .def_static("from_file", &Tokenizer::load, nb::arg("path"),
                  "Reads a tokenizer.json file, or a folder holding tokenizer.json or vocab.json "
                  "and merges.txt.")
      .def(
          "encode", [](const Tokenizer& t, const std::string& text) { return t.encode(text); },
          nb::arg("text"), nb::call_guard<nb::gil_scoped_release>(), "Token ids of `text`.")
      .def("decode", &Tokenizer::decode, nb::arg("ids"),
           "Text of token ids (invalid UTF-8 as U+FFFD, as Hugging Face does).")
      .def_prop_ro("vocab_size", &Tokenizer::vocab_size)
      .def("special_id", &Tokenizer::special_id, nb::arg("content"),
           "Id of a special token such as '<|endoftext|>', or -1.")
      .def_prop_ro("source", &Tokenizer::source);
}

}  // namespace gptrt::python
