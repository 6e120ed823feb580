// The LSTM recurrence's product (64 x 256) x (256 x 1024), timed with the Eigen that TensorFlow ships:
// what a hand-written TensorFlow op's loop would get for it, without oneDNN. Median of 7 rounds.
//   INC=$(python -c "import tensorflow as tf; print(tf.sysconfig.get_include())")
//   g++ -O3 -march=native -mno-avx512fp16 -DNDEBUG -std=c++17 -I$INC eigen_product.cc -o one_thread
//   g++ -O3 -march=native -mno-avx512fp16 -DNDEBUG -std=c++17 -fopenmp -I$INC eigen_product.cc -o two_threads
//   ./one_thread; OMP_NUM_THREADS=2 ./two_threads
// (-mno-avx512fp16: TensorFlow's Eigen headers do not compile with GCC 12's avx512fp16 on.)
#include <Eigen/Dense>
#include <chrono>
#include <cstdio>
#include <vector>
#include <algorithm>
#ifdef _OPENMP
#include <omp.h>
#endif
template <typename T>
double time_products(int reps) {
  using M = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  M h = M::Random(64, 256), u = M::Random(256, 1024), z(64, 1024);
  std::vector<double> ms;
  for (int round = 0; round < 7; ++round) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) { z.noalias() = h * u; h(0, 0) = z(1, 1) * T(1e-3); }
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count() / reps);
  }
  std::sort(ms.begin(), ms.end());
  return ms[3];
}
int main() {
#ifdef _OPENMP
  std::printf("threads %d\n", omp_get_max_threads());
#endif
  double f = time_products<float>(200);
  std::printf("float32: %.3f ms per product, %.0f GFLOP/s\n", f, 2.0 * 64 * 256 * 1024 / f / 1e6);
  double b = time_products<Eigen::bfloat16>(20);
  std::printf("bfloat16: %.3f ms per product, %.0f GFLOP/s\n", b, 2.0 * 64 * 256 * 1024 / b / 1e6);
}
