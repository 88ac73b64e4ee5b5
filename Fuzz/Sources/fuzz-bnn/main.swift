import FuzzSupport

Fuzz.main(testOneInput: fuzzOneInput, writeSeeds: BNNSeeds.write)
