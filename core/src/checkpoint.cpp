// eva — model checkpoints.
#include "eva/checkpoint.hpp"

#include <set>

#include "eva/error.hpp"

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

Model<float> load_model(const SafetensorsFile& f, nlohmann::json* metadata_out) {
    const auto& meta = f.metadata();
    auto parse = [&](const std::string& key) {
        const auto it = meta.find(key);
        if (it == meta.end()) throw FileError("checkpoint: __metadata__ has no \"" + key + "\" entry");
        try {
            return nlohmann::json::parse(it->second);
        } catch (const nlohmann::json::exception&) {
            throw FileError("checkpoint: __metadata__[\"" + key + "\"] is not JSON");
        }
    };
    const ModelArgs args = model_args_from_json(parse("config"));
    const nlohmann::json moe = parse("moe");
    MoeConfig mc;
    try {
        mc = moe_config(args, parse_balance(moe.at("balance").get<std::string>()), moe.at("gamma").get<double>(),
                        moe.at("alpha").get<double>());
    } catch (const nlohmann::json::exception& e) {
        throw FileError(std::string("checkpoint: __metadata__[\"moe\"] is malformed: ") + e.what());
    }
    Model<float> m = model_alloc<float>(args, mc);
    std::set<std::string> expected;
    for (const auto& t : named_tensors(m.w)) {
        expected.insert(t.name);
        f.read_f32(t.name, t.shape, t.data);  // FileError if missing, not F32, or shaped differently
    }
    for (const auto& [name, e] : f.entries())
        if (!expected.count(name)) throw FileError("checkpoint: unexpected tensor \"" + name + "\" for this config");
    if (metadata_out) {
        *metadata_out = nlohmann::json::object();
        for (const auto& [k, v] : meta) {
            try {
                (*metadata_out)[k] = nlohmann::json::parse(v);
            } catch (const nlohmann::json::exception&) {
                (*metadata_out)[k] = v;
            }
        }
    }
    return m;
}

}  // namespace eva
