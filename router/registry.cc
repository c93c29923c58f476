#include "router/registry.h"

#include <stdio.h>
#include <stdlib.h>

#include "absl/container/flat_hash_map.h"
#include "router/router.h"

namespace spindle {

struct Registry::Impl {
  absl::flat_hash_map<std::string, Entry> by_name;
  absl::flat_hash_map<GenericFn, std::string> by_fn;
};

Registry& Registry::instance() {
  static Registry* r = new Registry();
  return *r;
}

Registry::Impl* Registry::impl() {
  static Impl* i = new Impl();
  return i;
}

const Registry::Impl* Registry::impl() const { return const_cast<Registry*>(this)->impl(); }

void Registry::add(const char* name, GenericFn fn, Invoker invoker, Dispatch dispatch) {
  Impl* i = impl();
  if (i->by_name.contains(name)) {
    fprintf(stderr, "spindle: function %s registered twice\n", name);
    abort();
  }
  i->by_name[name] = Entry{name, fn, invoker, dispatch};
  i->by_fn[fn] = name;
}

const std::string* Registry::name_of(GenericFn fn) const {
  auto it = impl()->by_fn.find(fn);
  return it == impl()->by_fn.end() ? nullptr : &it->second;
}

const Registry::Entry* Registry::find(std::string_view name) const {
  auto it = impl()->by_name.find(absl::string_view(name.data(), name.size()));
  return it == impl()->by_name.end() ? nullptr : &it->second;
}

void pack_error_reply(const absl::Status& status, std::string_view type, std::string* out) {
  Router* r = Router::current();
  out->clear();
  StringBuffer buf(out);
  Packer pk(buf);
  pk.pack_array(2);
  pk.pack(false);
  pk.pack_array(4);
  pk.pack(static_cast<int>(status.code()));
  pk.pack(std::string(type));
  pk.pack(std::string(status.message()));
  pk.pack(r ? r->name() : std::string("?"));
}

}  // namespace spindle
