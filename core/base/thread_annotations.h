// Clang thread-safety annotations. With clang and -Wthread-safety every
// GUARDED_BY field is checked at compile time; with gcc they expand to
// nothing. Our CI's clang build turns the warnings into errors.
#ifndef SHMPORTS_CORE_BASE_THREAD_ANNOTATIONS_H_
#define SHMPORTS_CORE_BASE_THREAD_ANNOTATIONS_H_

#if defined(__clang__)
#define SHMPORTS_TSA(x) __attribute__((x))
#else
#define SHMPORTS_TSA(x)
#endif

#define CAPABILITY(x) SHMPORTS_TSA(capability(x))
#define SCOPED_CAPABILITY SHMPORTS_TSA(scoped_lockable)
#define GUARDED_BY(x) SHMPORTS_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) SHMPORTS_TSA(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) SHMPORTS_TSA(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) SHMPORTS_TSA(acquired_after(__VA_ARGS__))
#define REQUIRES(...) SHMPORTS_TSA(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) SHMPORTS_TSA(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) SHMPORTS_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) SHMPORTS_TSA(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) SHMPORTS_TSA(try_acquire_capability(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) SHMPORTS_TSA(assert_capability(x))
#define RETURN_CAPABILITY(x) SHMPORTS_TSA(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS SHMPORTS_TSA(no_thread_safety_analysis)

#endif  // SHMPORTS_CORE_BASE_THREAD_ANNOTATIONS_H_
