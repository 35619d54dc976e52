// Ownership of libuv handles. libuv frees nothing itself: a handle's memory
// must stay valid until its close callback runs, one loop turn after
// uv_close(). UvHandle<T> is a unique_ptr whose deleter clears handle->data
// (so no callback can reach the dead owner), calls uv_close, and frees the
// memory in the close callback.
//
// T is a libuv handle type, or a standard-layout struct whose first member is
// one (so that requests embedded next to the handle, such as a uv_write_t,
// live exactly as long as the handle and their cancellation callbacks never
// touch freed memory).
//
// Rules: create with make_uv_handle<T>() (zero-filled, so a handle whose
// uv_*_init was never called or failed is recognised and freed directly);
// destroy on the loop's thread, before the loop (EventLoop runs the pending
// close callbacks when it is destroyed).
#pragma once

#include <uv.h>

#include <memory>
#include <type_traits>

namespace trellis::event {

template <typename T>
uv_handle_t* as_uv_handle(T* t) {
  static_assert(std::is_standard_layout_v<T>, "the libuv handle must be T's first member");
  return reinterpret_cast<uv_handle_t*>(t);
}

template <typename T>
struct UvHandleCloser {
  void operator()(T* t) const noexcept {
    uv_handle_t* h = as_uv_handle(t);
    h->data = nullptr;
    if (h->type == UV_UNKNOWN_HANDLE) {  // never initialised: libuv does not know it
      delete t;
      return;
    }
    uv_close(h, [](uv_handle_t* closed) { delete reinterpret_cast<T*>(closed); });
  }
};

template <typename T>
using UvHandle = std::unique_ptr<T, UvHandleCloser<T>>;

template <typename T>
UvHandle<T> make_uv_handle() {
  static_assert(std::is_trivially_default_constructible_v<T>);
  return UvHandle<T>(new T());  // value-initialised: type == UV_UNKNOWN_HANDLE until init
}

}  // namespace trellis::event
