// Networks, engines and execution contexts: import, build, save, load, inspect and run (NumPy in,
// NumPy out, the GIL released while the engine runs).
#include <nanobind/stl/map.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "gptrt/engine.h"
#include "gptrt/error.h"

namespace gptrt::python {
namespace {

using EnginePtr = std::shared_ptr<Engine>;  // (nanobind holds engines as non-const)

nb::dict describe(const TensorDesc& t) {
  nb::dict d;
  d["name"] = t.name;
  d["dtype"] = std::string(dtype_name(t.dtype));
  nb::list dims;
  for (size_t i = 0; i < t.dims.size(); ++i) {
    if (t.dims[i] >= 0)
      dims.append(t.dims[i]);
    else
      dims.append(t.dim_names.size() > i && !t.dim_names[i].empty()
                      ? nb::str(t.dim_names[i].c_str())
                      : nb::str("?"));
  }
  d["shape"] = dims;
  return d;
}

nb::list describe(const std::vector<TensorDesc>& ts) {
  nb::list l;
  for (const TensorDesc& t : ts) l.append(describe(t));
  return l;
}

nb::dict describe(const ModelInfo& m) {
  nb::dict d;
  d["source"] = m.source;
  d["producer"] = m.producer;
  d["opset"] = m.opset;
  d["inputs"] = describe(m.inputs);
  d["outputs"] = describe(m.outputs);
  d["node_count"] = m.node_count;
  d["parameter_count"] = m.parameter_count;
  d["op_counts"] = m.op_counts;
  d["notices"] = m.notices;
  return d;
}

nb::tuple dims(const Shape& s) {
  nb::list l;
  for (int64_t v : s) l.append(v);
  return nb::tuple(l);
}

nb::list describe(const std::vector<OptimizationProfile>& profiles) {
  nb::list out;
  for (const OptimizationProfile& p : profiles) {
    nb::dict d;
    for (const auto& [name, r] : p.inputs)
      d[name.c_str()] = nb::make_tuple(dims(r.min), dims(r.opt), dims(r.max));
    out.append(d);
  }
  return out;
}

Shape shape_of(nb::handle h, const std::string& what) {
  Shape s;
  try {
    for (nb::handle v : h) s.push_back(nb::cast<int64_t>(v));
  } catch (const std::exception&) {
    throw Error(ErrorCode::kInvalidArgument,
                what + ": expected a shape (a tuple of ints), found " + py_str(nb::repr(h)));
  }
  return s;
}

// [{"input_ids": ((1, 1), (1, 12), (8, 128)), ...}, ...] -> profiles (min, opt, max per input).
std::vector<OptimizationProfile> profiles_of(nb::handle list) {
  std::vector<OptimizationProfile> out;
  if (list.is_none()) return out;
  for (nb::handle p : list) {
    if (!nb::isinstance<nb::dict>(p))
      throw Error(ErrorCode::kInvalidArgument,
                  "profiles: each profile is a dict of input name -> (min, opt, max) shapes, "
                  "found " +
                      py_str(nb::repr(p)));
    OptimizationProfile prof;
    for (auto [k, v] : nb::borrow<nb::dict>(p)) {
      const std::string name = py_str(k);
      nb::tuple t;
      if (!nb::try_cast(v, t) || t.size() != 3)
        throw Error(ErrorCode::kInvalidArgument, "profiles: input '" + name +
                                                     "' needs (min, opt, max) shapes, found " +
                                                     py_str(nb::repr(v)));
      const std::string what = "profiles: input '" + name + "'";
      prof.inputs.push_back(
          {name, {shape_of(t[0], what), shape_of(t[1], what), shape_of(t[2], what)}});
    }
    out.push_back(std::move(prof));
  }
  return out;
}

EnginePtr build(const Network& net, nb::handle profiles, const std::string& precision,
                const std::string& backend, int64_t max_batch, int64_t max_seq_len, bool keep_past,
                const std::string& cpu_isa, int64_t int8_group) {
  BuildConfig c;
  c.profiles = profiles_of(profiles);
  c.precision = precision_from_name(precision);
  c.backend = backend_from_name(backend);
  c.default_max_batch = max_batch;
  c.default_max_seq_len = max_seq_len;
  c.keep_past = keep_past;
  c.cpu_isa = cpu_isa;
  c.int8_group = int8_group;
  nb::gil_scoped_release release;
  return std::const_pointer_cast<Engine>(Engine::build(net, c));
}

nb::dict run(ExecutionContext& ctx, const EnginePtr& engine, nb::dict inputs) {
  TensorMap in;
  for (auto [k, v] : inputs) {
    const std::string name = py_str(k);
    in[name] = tensor_from_array(v, "input '" + name + "'");
  }
  std::vector<Tensor> out;
  {
    nb::gil_scoped_release release;
    out = ctx.execute(in);
  }
  nb::dict d;
  const auto& outputs = engine->info().model.outputs;
  for (size_t i = 0; i < out.size() && i < outputs.size(); ++i)
    d[outputs[i].name.c_str()] = array_from_tensor(out[i]);
  return d;
}

// One forward pass on DLPack tensors in GPU memory, the logits written into `outputs` (device
// tensors of output_shapes()), after the work queued on `stream` (a cudaStream_t as an integer).
void run_device(ExecutionContext& ctx, nb::dict inputs, nb::list outputs, uintptr_t stream) {
  std::map<std::string, DeviceTensor> in;
  for (auto [k, v] : inputs) {
    const std::string name = py_str(k);
    in[name] = device_tensor_from(v, "input '" + name + "'");
  }
  std::vector<DeviceTensor> out;
  for (size_t i = 0; i < outputs.size(); ++i)
    out.push_back(device_tensor_from(outputs[i], "output " + std::to_string(i)));
  nb::gil_scoped_release release;
  ctx.execute_on_device(in, out, reinterpret_cast<void*>(stream));
}

// A context with the engine it came from (the outputs' names, and kept alive).
struct Context {
  EnginePtr engine;
  std::unique_ptr<ExecutionContext> ctx;
};

}  // namespace

void bind_engine(nb::module_& m) {
  nb::class_<Network>(m, "Network", "An imported model: an ONNX file or a Hugging Face folder.")
      .def_static("from_onnx", &Network::from_onnx, nb::arg("path"),
                  "Reads an ONNX file (external data next to it).")
      .def_static("from_hf", &Network::from_hf, nb::arg("dir"),
                  "Reads a Hugging Face GPT-2 folder (config.json + model.safetensors).")
      .def(
          "info", [](const Network& n) { return describe(n.info()); },
          "Inputs, outputs, opset, op counts and parameters, as `gptrt inspect` prints them.")
      .def(
          "decoder", [](const Network& n) { return n.fused().decoder; },
          "One line: the GPT-2 decoder the fusion passes found, or what kept them from it.");

  nb::class_<Engine>(m, "Engine",
                     "A compiled model for one target (backend, ISA or SM, precision).")
      .def("save", &Engine::save, nb::arg("path"),
           "Writes the engine file (atomically: on failure no file is left).")
      .def(
          "serialize",
          [](const Engine& e) {
            std::vector<uint8_t> b = e.serialize();
            return nb::bytes(reinterpret_cast<const char*>(b.data()), b.size());
          },
          "The engine file's bytes.")
      .def_prop_ro("backend",
                   [](const Engine& e) { return std::string(backend_name(e.info().backend)); })
      .def_prop_ro("precision",
                   [](const Engine& e) { return std::string(precision_name(e.info().precision)); })
      .def_prop_ro("target", [](const Engine& e) { return e.info().target; })
      .def(
          "inspect",
          [](const Engine& e) {
            const EngineInfo& i = e.info();
            nb::dict d = describe(i.model);
            d["backend"] = std::string(backend_name(i.backend));
            d["target"] = i.target;
            d["precision"] = std::string(precision_name(i.precision));
            d["gptrt_version"] = i.gptrt_version;
            d["format_version"] = i.format_version;
            d["profiles"] = describe(i.profiles);
            d["index_limits"] = i.index_limits;
            return d;
          },
          "What the engine holds: inputs, outputs, profiles (min, opt, max per input), target.");

  m.def("_build", &build, nb::arg("network"), nb::arg("profiles").none(), nb::arg("precision"),
        nb::arg("backend"), nb::arg("max_batch"), nb::arg("max_seq_len"), nb::arg("keep_past"),
        nb::arg("cpu_isa"), nb::arg("int8_group"));
  m.def(
      "_load",
      [](const std::string& path) -> EnginePtr {
        return std::const_pointer_cast<Engine>(Engine::load(path));
      },
      nb::arg("path"));

  nb::class_<Context>(m, "ExecutionContext",
                      "Per-run state of an engine (one per thread; not thread-safe).")
      .def(
          "__init__",
          [](Context* c, EnginePtr engine, int threads) {
            new (c) Context{engine, engine->create_execution_context(threads)};
          },
          nb::arg("engine"), nb::arg("threads") = 0)
      .def(
          "run", [](Context& c, nb::dict inputs) { return run(*c.ctx, c.engine, inputs); },
          nb::arg("inputs"),
          "One forward pass: {input name: array} -> {output name: array}. The GIL is released "
          "while the engine runs. Shapes outside every profile raise gptrt.ShapeError.")
      .def(
          "run_device",
          [](Context& c, nb::dict inputs, nb::list outputs, uintptr_t stream) {
            run_device(*c.ctx, inputs, outputs, stream);
          },
          nb::arg("inputs"), nb::arg("outputs"), nb::arg("stream") = 0,
          "One forward pass on tensors in GPU memory (cuda engines): {input name: DLPack tensor} "
          "-> writes the outputs into `outputs` (DLPack tensors of output_shapes()), after the "
          "work queued on `stream` (a cudaStream_t as an int; 0 = the legacy default stream). "
          "Nothing goes through the host; the GIL is released while it runs.")
      .def(
          "output_shapes",
          [](const Context& c, const std::map<std::string, std::vector<int64_t>>& shapes) {
            return c.ctx->output_shapes(shapes);
          },
          nb::arg("shapes"), "The outputs' shapes for these input shapes ({name: shape}).")
      .def_prop_ro("threads", [](const Context& c) { return c.ctx->threads(); })
      .def(
          "last_timings",
          [](const Context& c) {
            ExecutionContext::Timings t = c.ctx->last_timings();
            return nb::make_tuple(t.h2d_ms, t.compute_ms, t.d2h_ms);
          },
          "(host-to-device, compute, device-to-host) ms of the last run (cuda; zeros elsewhere).")
      .def(
          "set_cuda_graphs", [](Context& c, bool on) { c.ctx->set_cuda_graphs(on); },
          nb::arg("on"));
}

}  // namespace gptrt::python
