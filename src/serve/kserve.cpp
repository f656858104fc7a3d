// KServe's v2 / Open Inference Protocol (REST) on the engine's forward pass: health, server and
// model metadata, and infer (input_ids and attention_mask in, logits out) with JSON tensors or
// the binary data extension (Inference-Header-Content-Length), so that tritonclient's and
// KServe's clients work unchanged.
#include <algorithm>
#include <cstring>
#include <map>

#include "gptrt/error.h"
#include "serve/server_impl.h"

namespace gptrt::serve {
namespace {

struct V2Error {
  int status;
  std::string message;
};

const char* datatype_of(DType d) {
  switch (d) {
    case DType::kInt64:
      return "INT64";
    case DType::kInt32:
      return "INT32";
    case DType::kFloat32:
      return "FP32";
    case DType::kFloat16:
      return "FP16";
    case DType::kBool:
      return "BOOL";
    default:
      return "BYTES";
  }
}

DType dtype_of(const std::string& d) {
  if (d == "INT64") return DType::kInt64;
  if (d == "INT32") return DType::kInt32;
  if (d == "FP32") return DType::kFloat32;
  if (d == "BOOL") return DType::kBool;
  throw V2Error{400, "datatype " + d + " is not supported (INT64, INT32, FP32, BOOL)"};
}

void v2_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(json{{"error", message}}.dump(), "application/json");
}

json model_metadata(const Server::Impl& s) {
  const ModelInfo& m = s.engine->info().model;
  auto tensors = [](const std::vector<TensorDesc>& ts) {
    json a = json::array();
    for (const TensorDesc& t : ts) {
      a.push_back({{"name", t.name}, {"datatype", datatype_of(t.dtype)}, {"shape", t.dims}});
    }
    return a;
  };
  return {{"name", s.config.model_name},
          {"versions", json::array({"1"})},
          {"platform", std::string("gptrt_") + backend_name(s.engine->info().backend)},
          {"inputs", tensors(m.inputs)},
          {"outputs", tensors(m.outputs)}};
}

// A v2 tensor (JSON data or binary) as a gptrt Tensor.
Tensor read_input(const json& in, const char*& binary, const char* binary_end) {
  if (!in.contains("name") || !in["name"].is_string() || !in.contains("shape") ||
      !in["shape"].is_array() || !in.contains("datatype") || !in["datatype"].is_string())
    throw V2Error{400, "each input needs 'name', 'shape' and 'datatype'"};
  const std::string name = in["name"];
  DType dt = dtype_of(in["datatype"]);
  Shape shape;
  for (const json& d : in["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t{1} << 31))
      throw V2Error{400, "input '" + name + "': 'shape' must hold non-negative integers"};
    shape.push_back(d.get<int64_t>());
  }
  Tensor t(dt, shape);
  const size_t bytes = t.nbytes();
  if (in.contains("parameters") && in["parameters"].contains("binary_data_size")) {
    const json& b = in["parameters"]["binary_data_size"];
    if (!b.is_number_integer() || b.get<int64_t>() < 0 ||
        static_cast<size_t>(b.get<int64_t>()) != bytes ||
        static_cast<size_t>(binary_end - binary) < bytes)
      throw V2Error{400, "input '" + name +
                             "': binary_data_size does not match its shape and datatype, "
                             "or the body is shorter than it says"};
    if (bytes) std::memcpy(t.raw_mut(), binary, bytes);
    binary += bytes;
    return t;
  }
  if (!in.contains("data") || !in["data"].is_array())
    throw V2Error{400, "input '" + name + "' has no 'data' (nor binary_data_size)"};
  json flat = in["data"].flatten();  // nested lists are allowed: take the leaves in order
  std::vector<json> leaves;
  for (auto it = flat.begin(); it != flat.end(); ++it) leaves.push_back(*it);
  if (static_cast<int64_t>(leaves.size()) != t.numel())
    throw V2Error{400, "input '" + name + "' has " + std::to_string(leaves.size()) +
                           " values; its shape needs " + std::to_string(t.numel())};
  for (int64_t i = 0; i < t.numel(); ++i) {
    const json& v = leaves[static_cast<size_t>(i)];
    bool ok = dt == DType::kFloat32 ? v.is_number()
              : dt == DType::kBool  ? v.is_boolean()
                                    : v.is_number_integer();
    if (!ok)
      throw V2Error{
          400, "input '" + name + "' holds " + v.dump() + ", not " + std::string(in["datatype"])};
    switch (dt) {
      case DType::kInt64:
        t.data_mut<int64_t>()[i] = v.get<int64_t>();
        break;
      case DType::kInt32:
        t.data_mut<int32_t>()[i] = v.get<int32_t>();
        break;
      case DType::kFloat32:
        t.data_mut<float>()[i] = v.get<float>();
        break;
      default:
        static_cast<uint8_t*>(t.raw_mut())[i] = v.get<bool>() ? 1 : 0;
        break;
    }
  }
  return t;
}

void infer(Server::Impl& s, const httplib::Request& req, httplib::Response& res) {
  // The JSON header, then (binary data extension) the tensors' bytes.
  size_t header_len = req.body.size();
  if (req.has_header("Inference-Header-Content-Length")) {
    try {
      header_len = std::stoull(req.get_header_value("Inference-Header-Content-Length"));
    } catch (const std::exception&) {
      throw V2Error{400, "Inference-Header-Content-Length is not a number"};
    }
    if (header_len > req.body.size())
      throw V2Error{400, "Inference-Header-Content-Length is larger than the body"};
  }
  json body;
  try {
    body = json::parse(req.body.substr(0, header_len));
  } catch (const json::exception& e) {
    throw V2Error{400, std::string("the request is not valid JSON: ") + e.what()};
  }
  if (!body.is_object() || !body.contains("inputs") || !body["inputs"].is_array())
    throw V2Error{400, "the request needs an 'inputs' array"};
  const char* binary = req.body.data() + header_len;
  const char* binary_end = req.body.data() + req.body.size();
  TensorMap inputs;
  for (const json& in : body["inputs"])
    inputs[in.value("name", "")] = read_input(in, binary, binary_end);
  std::vector<Tensor> outs;
  std::vector<std::string> names;
  for (const TensorDesc& t : s.engine->info().model.outputs) names.push_back(t.name);
  {
    std::lock_guard<std::mutex> lock(s.forward_mu);
    try {
      outs = s.forward->execute(inputs);
    } catch (const Error& e) {
      throw V2Error{400, e.what()};
    }
  }
  // Which outputs, and whether binary: as requested (all, as JSON, when not said).
  std::map<std::string, bool> wanted;
  bool binary_default = false;
  if (body.contains("parameters") && body["parameters"].is_object())
    binary_default = body["parameters"].value("binary_data_output", false);
  if (body.contains("outputs") && body["outputs"].is_array()) {
    for (const json& o : body["outputs"]) {
      std::string n = o.value("name", "");
      if (std::find(names.begin(), names.end(), n) == names.end())
        throw V2Error{400, "output '" + n + "' does not exist; the model gives " + names[0]};
      bool bin = binary_default;
      if (o.contains("parameters") && o["parameters"].is_object())
        bin = o["parameters"].value("binary_data", bin);
      wanted[n] = bin;
    }
  } else {
    for (const std::string& n : names) wanted[n] = binary_default;
  }
  json out_list = json::array();
  std::string blob;
  for (size_t k = 0; k < outs.size(); ++k) {
    auto it = wanted.find(names[k]);
    if (it == wanted.end()) continue;
    Tensor t = outs[k];
    json o = {{"name", names[k]}, {"datatype", datatype_of(t.dtype())}, {"shape", t.shape()}};
    if (it->second) {
      o["parameters"] = {{"binary_data_size", t.nbytes()}};
      blob.append(static_cast<const char*>(t.raw()), t.nbytes());
    } else if (t.dtype() == DType::kFloat32) {
      o["data"] = std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
    } else {
      throw V2Error{400, "output '" + names[k] + "' is " + datatype_of(t.dtype()) +
                             "; ask for it as binary data"};
    }
    out_list.push_back(o);
  }
  json answer = {
      {"model_name", s.config.model_name}, {"model_version", "1"}, {"outputs", out_list}};
  if (body.contains("id")) answer["id"] = body["id"];
  std::string header = answer.dump();
  if (blob.empty()) {
    res.set_content(header, "application/json");
  } else {
    res.set_header("Inference-Header-Content-Length", std::to_string(header.size()));
    res.set_content(header + blob, "application/octet-stream");
  }
}

}  // namespace

void add_kserve_routes(Server::Impl& s) {
  s.http.Get("/v2/health/live", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"live", true}}.dump(), "application/json");
  });
  s.http.Get("/v2/health/ready", [&s](const httplib::Request&, httplib::Response& res) {
    res.status = s.ready ? 200 : 503;
    res.set_content(json{{"ready", s.ready.load()}}.dump(), "application/json");
  });
  s.http.Get("/v2", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"name", "gptrt"},
                         {"version", version()},
                         {"extensions", json::array({"binary_tensor_data"})}}
                        .dump(),
                    "application/json");
  });
  auto known = [&s](const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1];
    if (name != s.config.model_name) {
      v2_error(res, 404,
               "model '" + name + "' is not served here; this server serves '" +
                   s.config.model_name + "'");
      return false;
    }
    return true;
  };
  s.http.Get(R"(/v2/models/([^/]+)(?:/versions/1)?)",
             [&s, known](const httplib::Request& req, httplib::Response& res) {
               if (known(req, res)) res.set_content(model_metadata(s).dump(), "application/json");
             });
  s.http.Get(R"(/v2/models/([^/]+)(?:/versions/1)?/ready)", [&s, known](const httplib::Request& req,
                                                                        httplib::Response& res) {
    if (!known(req, res)) return;
    res.status = s.ready ? 200 : 503;
    res.set_content(json{{"name", s.config.model_name}, {"ready", s.ready.load()}}.dump(),
                    "application/json");
  });
  s.http.Post(R"(/v2/models/([^/]+)(?:/versions/1)?/infer)",
              [&s, known](const httplib::Request& req, httplib::Response& res) {
                if (!known(req, res)) return;
                try {
                  infer(s, req, res);
                } catch (const V2Error& e) {
                  v2_error(res, e.status, e.message);
                }
              });
}

}  // namespace gptrt::serve
