// eva — model checkpoints.
#include "eva/checkpoint.hpp"

#include <set>

#include "eva/checked.hpp"
#include "eva/error.hpp"
#include "eva/json.hpp"

namespace eva {

void save_model(Model<float>& m, const std::string& path, const nlohmann::json& metadata) {
    SafetensorsWriter out;
    for (const auto& t : named_tensors(m.w)) out.add(t.name, t.shape, t.data);
    out.set_metadata("config", to_json(m.args).dump());
    out.set_metadata("moe", nlohmann::json{{"balance", to_string(m.moe.balance)}, {"gamma", m.moe.gamma},
                                           {"alpha", m.moe.alpha}}.dump());
    out.set_metadata("format", "eva");
    for (const auto& [k, v] : metadata.items()) out.set_metadata(k, v.dump());
    out.write(path);
}

Model<float> load_model(const std::string& path) { return load_model(SafetensorsFile::read(path)); }

std::pair<ModelArgs, MoeConfig> checkpoint_config(const SafetensorsFile& f) {
    const auto& meta = f.metadata();
    auto parse = [&](const std::string& key) {
        const auto it = meta.find(key);
        if (it == meta.end()) throw FileError("checkpoint: __metadata__ has no \"" + key + "\" entry");
        return parse_json(it->second, "checkpoint: __metadata__[\"" + key + "\"]");
    };
    const ModelArgs args = model_args_from_json(parse("config"));
    const nlohmann::json moe = parse("moe");
    auto moe_field = [&](const char* key) -> const nlohmann::json& {
        if (!moe.is_object() || !moe.contains(key))
            throw FileError(std::string("checkpoint: __metadata__[\"moe\"] must be an object with balance, gamma and alpha; ") +
                            "got " + json_preview(moe));
        return moe[key];
    };
    const nlohmann::json &balance = moe_field("balance"), &gamma = moe_field("gamma"), &alpha = moe_field("alpha");
    if (!balance.is_string() || !gamma.is_number() || !alpha.is_number())
        throw FileError("checkpoint: __metadata__[\"moe\"]: balance must be a string, gamma and alpha numbers");
    return {args, moe_config(args, parse_balance(balance.get<std::string>()), gamma.get<double>(), alpha.get<double>())};
}

Model<float> load_model(const SafetensorsFile& f, nlohmann::json* metadata_out) {
    const auto& meta = f.metadata();
    const auto [args, mc] = checkpoint_config(f);
    // Before allocating: the config must describe exactly the tensors the file holds. A config claiming
    // moe_inter_dim 2^20 beside a few kB of data is refused here, not after zero-filling gigabytes.
    const std::uint64_t need = model_bytes(args, mc);
    if (need != f.data_size())
        throw FileError("checkpoint: its config needs " + std::to_string(need) + " bytes of float32 tensors (" +
                        format_bytes(need) + "), the file holds " + std::to_string(f.data_size()));
    Model<float> m = model_alloc<float>(args, mc);
    std::set<std::string> expected;
    for (const auto& t : named_tensors(m.w)) {
        expected.insert(t.name);
        f.read_f32(t.name, t.shape, t.data);  // FileError if missing, not F32, or shaped differently
    }
    for (const auto& [name, e] : f.entries())
        if (!expected.count(name))
            throw FileError("checkpoint: unexpected tensor \"" + preview(name) + "\" for this config");
    if (metadata_out) {
        *metadata_out = nlohmann::json::object();
        for (const auto& [k, v] : meta) {
            try {
                (*metadata_out)[k] = parse_json(v, "checkpoint: __metadata__[\"" + preview(k) + "\"]");
            } catch (const FileError&) {
                (*metadata_out)[k] = v;  // a plain string entry (e.g. "format": "eva")
            }
        }
    }
    return m;
}

}  // namespace eva
