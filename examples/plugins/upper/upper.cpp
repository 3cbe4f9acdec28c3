// `type: upper`: upper-cases (ASCII) the string fields it is given; the whole plugin.
#include <string>
#include <vector>

#include <weir/sdk.hpp>

using namespace weir::sdk;

class Upper {
 public:
  static constexpr const char* type = "upper";
  static constexpr const char* summary = "Upper-cases string fields (ASCII)";
  static inline const std::vector<Option> options = {
      {.name = "fields", .type = OptionType::StringList, .required = true, .doc = "Dotted paths of the fields."},
  };

  explicit Upper(const Options& o) {
    for (const std::string& f : o.strings("fields")) fields_.emplace_back(f);
    if (fields_.empty()) o.fail("fields", "name at least one field");  // reported at its file:line:col
  }

  void start(Context& ctx) { changed_ = ctx.counter("upper_changed_fields_total", "Fields upper-cased."); }

  void process(Batch& batch, Context& ctx) {
    for (Event event : batch) {
      for (const Path& field : fields_) {
        Value value = event.get(field);
        if (!value.is_string()) continue;  // absent, or not text: left alone
        std::string_view text = value.as_string();
        char* out = event.set_string(value, text.size());  // new bytes in the batch's memory
        for (char c : text) *out++ = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
        changed_.add();
      }
    }
    ctx.emit(batch);  // or leave it: what is not emitted is released
  }

 private:
  std::vector<Path> fields_;
  Counter changed_;
};

WEIR_PLUGIN("upper", "1.0.0", Upper)
