// Lets an object be destroyed from inside one of its own callbacks.
//
// A class that calls out (to a handler, a std::function) keeps a
// DestructionFlag member and wraps every call-out in a CallbackScope on the
// stack. When the call returns, scope.destroyed() says whether the object died
// meanwhile; if so, the caller must not touch `this` again. Scopes nest (a
// callback may trigger another callback of the same object), and the flag
// reaches every active scope. Costs nothing on the heap.
#pragma once

namespace trellis::event {

class CallbackScope;

class DestructionFlag {
 public:
  DestructionFlag() = default;
  DestructionFlag(const DestructionFlag&) = delete;
  DestructionFlag& operator=(const DestructionFlag&) = delete;
  inline ~DestructionFlag();

 private:
  friend class CallbackScope;
  CallbackScope* innermost_ = nullptr;
};

class CallbackScope {
 public:
  explicit CallbackScope(DestructionFlag& flag) : flag_(flag), outer_(flag.innermost_) {
    flag.innermost_ = this;
  }
  ~CallbackScope() {
    if (!destroyed_) flag_.innermost_ = outer_;
  }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;

  bool destroyed() const { return destroyed_; }

 private:
  friend class DestructionFlag;
  DestructionFlag& flag_;
  CallbackScope* outer_;
  bool destroyed_ = false;
};

DestructionFlag::~DestructionFlag() {
  for (CallbackScope* s = innermost_; s != nullptr; s = s->outer_) s->destroyed_ = true;
}

}  // namespace trellis::event
