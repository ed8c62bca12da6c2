// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {LockedValues} from "./SymmioTypes.sol";

/// Arithmetic on the (cva, lf, partyAmm, partyBmm) quadruple.
library LibLockedValues {
    function totalForPartyA(LockedValues memory v) internal pure returns (uint256) {
        return v.cva + v.lf + v.partyAmm;
    }

    function totalForPartyB(LockedValues memory v) internal pure returns (uint256) {
        return v.cva + v.lf + v.partyBmm;
    }

    /// v × num / den, field by field (rounded down).
    function scale(LockedValues memory v, uint256 num, uint256 den) internal pure returns (LockedValues memory) {
        return LockedValues((v.cva * num) / den, (v.lf * num) / den, (v.partyAmm * num) / den, (v.partyBmm * num) / den);
    }

    function minus(LockedValues memory a, LockedValues memory b) internal pure returns (LockedValues memory) {
        return LockedValues(a.cva - b.cva, a.lf - b.lf, a.partyAmm - b.partyAmm, a.partyBmm - b.partyBmm);
    }

    function add(LockedValues storage self, LockedValues memory v) internal {
        self.cva += v.cva;
        self.lf += v.lf;
        self.partyAmm += v.partyAmm;
        self.partyBmm += v.partyBmm;
    }

    function sub(LockedValues storage self, LockedValues memory v) internal {
        self.cva -= v.cva;
        self.lf -= v.lf;
        self.partyAmm -= v.partyAmm;
        self.partyBmm -= v.partyBmm;
    }
}
