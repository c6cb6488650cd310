// AllTests: the list of every in-kernel test; a new test file adds its list here.

func allKernelTests() -> [KernelTest] {
  memoryTests() + interruptTests() + faultTests() + loaderTests()
}
